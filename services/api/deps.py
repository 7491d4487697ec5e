"""FastAPI dependencies: the process's ``Deps`` and the authenticated user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from parley.domain.actions.accounts import authenticate
from parley.domain.deps import Deps
from parley.domain.errors import Unauthenticated
from parley.domain.models import User

_bearer = HTTPBearer(auto_error=False)


def get_deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


DepsDep = Annotated[Deps, Depends(get_deps)]


async def get_token(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    if creds is None or not creds.credentials:
        raise Unauthenticated("missing bearer token", code="not_authed")
    return creds.credentials


TokenDep = Annotated[str, Depends(get_token)]


async def get_actor(deps: DepsDep, token: TokenDep) -> User:
    return await authenticate(deps, token)


ActorDep = Annotated[User, Depends(get_actor)]
