"""The seed's manifest: which users, workspaces and conversations exist on a target, and who
is a member of what. Written by ``loadtests.seed``, read by every Locust process.

Tokens are deliberately not in it: users log in at the start of a run, as real clients do, so a
manifest never goes stale when tokens expire or are revoked, and holds nothing secret.
"""

from __future__ import annotations

from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

ConversationKind = Literal["large", "small", "dm"]


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UserEntry(Entry):
    index: int
    username: str
    id: str
    workspace_id: str


class WorkspaceEntry(Entry):
    id: str
    slug: str
    owner: int  # user index


class ConversationEntry(Entry):
    id: str
    workspace_id: str
    kind: ConversationKind
    name: str | None
    members: list[int]  # user indexes


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", ignored_types=(cached_property,))

    target: str
    profile: str
    created_at: datetime
    users: list[UserEntry]
    workspaces: list[WorkspaceEntry]
    conversations: list[ConversationEntry]

    @cached_property
    def by_member(self) -> dict[int, list[ConversationEntry]]:
        """Each user index → the conversations it belongs to."""
        index: dict[int, list[ConversationEntry]] = {u.index: [] for u in self.users}
        for conversation in self.conversations:
            for member in conversation.members:
                index.setdefault(member, []).append(conversation)
        return index

    def conversations_of(self, user_index: int, *kinds: ConversationKind) -> list[ConversationEntry]:
        mine = self.by_member.get(user_index, [])
        return [c for c in mine if c.kind in kinds] if kinds else list(mine)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=1))
        tmp.replace(path)  # atomic: a Locust process never reads half a manifest

    @classmethod
    def load(cls, path: Path) -> Manifest:
        return cls.model_validate_json(path.read_text())
