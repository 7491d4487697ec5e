"""Getting Slack-style tokens with a Parley login (``Authorization: Bearer <Parley token>``).

    POST /slack/tokens  {"workspace_id": "…"}                     → a user token (xoxp-…)
    POST /slack/bots    {"workspace_id": "…", "name": "…",        → a bot user with its bot
                         "events": ["message", "app_mention"]}      token (xoxb-…) and app-level
                                                                     token (xapp-…); owners only
These are Parley endpoints (Parley's error format); operators can do the same from the command
line: ``python -m services.slack.admin --help``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from parley.domain.actions import api_tokens, bots
from parley.domain.actions.accounts import authenticate
from parley.domain.deps import Deps
from parley.domain.errors import Unauthenticated
from parley.domain.models import Id, User
from services.slack import ids

router = APIRouter(prefix="/slack", tags=["slack"])


def _deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


async def _actor(request: Request) -> User:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token", code="not_authed")
    return await authenticate(_deps(request), token.strip())


DepsDep = Annotated[Deps, Depends(_deps)]
ActorDep = Annotated[User, Depends(_actor)]


class UserTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workspace_id: Id


class UserTokenPublic(BaseModel):
    token: str = Field(description="shown once; only its hash is stored")
    team_id: str
    user_id: str


class BotCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workspace_id: Id
    name: str = Field(min_length=2, max_length=32)
    events: list[str] | None = Field(default=None, description="event types the bot receives")


class BotPublic(BaseModel):
    bot_user_id: str
    bot_id: str
    app_id: str
    team_id: str
    name: str
    events: list[str]
    bot_token: str = Field(description="xoxb-…, shown once")
    app_token: str = Field(description="xapp-…, shown once")


@router.post("/tokens", status_code=201, response_model=UserTokenPublic)
async def create_user_token(body: UserTokenCreate, deps: DepsDep, actor: ActorDep) -> UserTokenPublic:
    token = await api_tokens.issue_user_token(deps, actor, body.workspace_id)
    return UserTokenPublic(token=token, team_id=ids.team_id(body.workspace_id), user_id=ids.user_id(actor.id))


@router.post("/bots", status_code=201, response_model=BotPublic)
async def create_bot(body: BotCreate, deps: DepsDep, actor: ActorDep) -> BotPublic:
    created = await bots.create_bot(deps, actor, body.workspace_id, body.name, event_types=body.events)
    return bot_public(created)


def bot_public(created: bots.BotCredentials) -> BotPublic:
    user_id = created.user.id
    return BotPublic(
        bot_user_id=ids.user_id(user_id),
        bot_id=ids.bot_id(user_id),
        app_id=ids.app_id(user_id),
        team_id=ids.team_id(created.bot.workspace_id),
        name=created.bot.name,
        events=list(created.bot.event_types),
        bot_token=created.bot_token,
        app_token=created.app_token,
    )
