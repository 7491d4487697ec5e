"""Sign-up, login, logout, the current user."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from parley.domain.actions import accounts
from parley.domain.models import Id, User
from services.api.deps import ActorDep, DepsDep, TokenDep
from services.api.schemas import LogIn, SignUp, TokenPublic

router = APIRouter(tags=["auth"])


@router.post("/auth/signup", status_code=201, response_model=TokenPublic)
async def signup(body: SignUp, deps: DepsDep, request: Request) -> TokenPublic:
    await accounts.sign_up(deps, body.username, body.password, body.display_name)
    token, user = await accounts.log_in(deps, body.username, body.password, client_ip=_client_ip(request))
    return TokenPublic(token=token, user=user)


@router.post("/auth/login", response_model=TokenPublic)
async def login(body: LogIn, deps: DepsDep, request: Request) -> TokenPublic:
    token, user = await accounts.log_in(deps, body.username, body.password, client_ip=_client_ip(request))
    return TokenPublic(token=token, user=user)


@router.post("/auth/logout", status_code=204)
async def logout(deps: DepsDep, token: TokenDep, _: ActorDep) -> Response:
    await accounts.log_out(deps, token)
    return Response(status_code=204)


@router.get("/users/me", response_model=User)
async def me(actor: ActorDep) -> User:
    return actor


@router.get("/users/{user_id}", response_model=User)
async def get_user(user_id: Id, deps: DepsDep, actor: ActorDep) -> User:
    return await accounts.get_user(deps, actor, user_id)


def _client_ip(request: Request) -> str | None:
    # uvicorn has already replaced a trusted proxy's address with X-Forwarded-For's client.
    return request.client.host if request.client else None
