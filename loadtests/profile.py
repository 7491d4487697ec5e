"""Load profiles: who is in which conversation (used by the seed) and what each simulated user
does, how often and with which message sizes (used by the locustfile).

A profile is a JSON file in ``loadtests/profiles/`` (``default``, ``smoke``, ``firehose``) or any
path. It is validated here so a typo fails at the start of a run, not as odd figures at its end.
The manifest (what the seed created) lives next to it in ``loadtests/.seed/``, one file per
target URL, so the seed and every Locust process, master or worker, find the same one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

LOADTESTS_DIR = Path(__file__).resolve().parent
PROFILES_DIR = LOADTESTS_DIR / "profiles"
SEED_DIR = LOADTESTS_DIR / ".seed"
REPORTS_DIR = LOADTESTS_DIR / "reports"

USERNAME_PREFIX = "load-"
# Fixed on purpose: seeded users are throwaway accounts on a test target, and every Locust worker
# process must be able to log them in without a secret being handed around.
PASSWORD = "parley-load-test"
# Marks a message sent by a load-test user and carries its send time (wall clock, ms since the
# epoch): "lt-<send ms>-<slot>-<n>". Wall clock, not a monotonic clock, because sender and
# receiver may live in different Locust worker processes (on the same machine, one clock).
CLIENT_MSG_ID_PREFIX = "lt-"

TaskName = Literal["send_channel", "send_dm", "typing", "read_history", "search", "react", "mark_read"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Population(Strict):
    """How the seed spreads users over workspaces and conversations."""

    large_channels: list[float] = Field(
        default=[1.0, 0.5],
        description="one entry per large channel of each workspace: the share of its members in it",
    )
    small_channel_members: tuple[int, int] = Field(
        default=(3, 8), description="members of each small channel: inclusive range"
    )
    dms_per_user: int = Field(default=2, ge=0, le=20, description="DMs each user opens with random others")
    random_seed: int = Field(default=5, description="same seed and sizes → same memberships")

    @model_validator(mode="after")
    def _check(self) -> Population:
        if any(not 0.0 < share <= 1.0 for share in self.large_channels):
            raise ValueError("large_channels: each share must be in (0, 1]")
        low, high = self.small_channel_members
        if not 2 <= low <= high:
            raise ValueError("small_channel_members: [low, high] with 2 <= low <= high")
        return self


class Behaviour(Strict):
    """What one simulated user does: one task after each think time."""

    think_seconds: tuple[float, float] = Field(
        default=(0.5, 1.5), description="pause between two tasks of one user, uniform in [low, high]"
    )
    tasks: dict[TaskName, int] = Field(
        default={
            "send_channel": 40,
            "send_dm": 15,
            "typing": 15,
            "read_history": 12,
            "search": 5,
            "react": 8,
            "mark_read": 5,
        },
        description="relative weights of the tasks",
    )
    message_chars: list[tuple[int, int]] = Field(
        default=[(20, 40), (80, 35), (300, 20), (2000, 5)],
        description="[characters, weight] pairs: the size distribution of sent texts",
    )
    large_channel_send_share: float = Field(
        default=0.3, ge=0.0, le=1.0, description="share of channel sends that go to a large channel"
    )
    history_page: int = Field(default=50, ge=1, le=200)
    ack_timeout_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> Behaviour:
        low, high = self.think_seconds
        if not 0 <= low <= high:
            raise ValueError("think_seconds: [low, high] with 0 <= low <= high")
        if not self.tasks or any(w < 0 for w in self.tasks.values()) or sum(self.tasks.values()) == 0:
            raise ValueError("tasks: non-negative weights, at least one positive")
        if not self.message_chars or any(c < 1 or w < 0 for c, w in self.message_chars):
            raise ValueError("message_chars: [characters >= 1, weight >= 0] pairs")
        return self

    def sends_per_user_per_second(self) -> float:
        """The send rate one user aims at (ignoring the time the tasks themselves take)."""
        total = sum(self.tasks.values())
        sends = self.tasks.get("send_channel", 0) + self.tasks.get("send_dm", 0)
        mean_think = sum(self.think_seconds) / 2
        return (sends / total) / mean_think if mean_think > 0 else float("inf")


class Profile(Strict):
    name: str
    description: str = ""
    population: Population = Population()
    behaviour: Behaviour = Behaviour()


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.json"))


def load_profile(name_or_path: str) -> Profile:
    """A profile by name (``loadtests/profiles/<name>.json``) or by path to a JSON file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no load profile {name_or_path!r}; known: {', '.join(profile_names())}")
    raw: dict[str, Any] = json.loads(path.read_text())
    raw.setdefault("name", path.stem)
    return Profile.model_validate(raw)


def username(index: int) -> str:
    return f"{USERNAME_PREFIX}{index}"


def normalized_target(url: str) -> str:
    return url.strip().rstrip("/").lower()


def manifest_path(target: str) -> Path:
    """Where the seed writes, and Locust reads, the manifest for one target URL."""
    digest = hashlib.sha256(normalized_target(target).encode()).hexdigest()[:12]
    return SEED_DIR / f"{digest}.json"
