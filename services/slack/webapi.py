"""The Web API endpoint: ``/api/<method>`` on GET or POST, Slack's transport rules.

Arguments come from the query string, a form body (urlencoded) or a JSON body;
the token from ``Authorization: Bearer`` or a ``token`` argument. Every outcome is JSON with
``ok``: errors are HTTP 200 with ``{"ok": false, "error": …}``, rate limits HTTP 429 with
``Retry-After`` and ``ratelimited``. A handler validates Slack's arguments, calls domain actions
and shapes the result; nothing here decides what a user may do.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

import services.slack.methods  # noqa: F401  (registers every method)
from parley.domain.actions.api_tokens import authenticate_api_token
from parley.domain.deps import Deps
from parley.domain.errors import DomainError
from services.slack.errors import SlackError, from_domain, ratelimited
from services.slack.methods.auth import api_test
from services.slack.registry import METHODS, Args, Ctx
from services.slack.settings import SlackSettings

log = logging.getLogger(__name__)
router = APIRouter()


def slack_settings(request: Request) -> SlackSettings:
    settings: SlackSettings | None = getattr(request.app.state, "slack_settings", None)
    if settings is None:
        settings = request.app.state.slack_settings = SlackSettings()
    return settings


def base_url(request: Request, settings: SlackSettings) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/") + "/"
    return str(request.base_url)


async def read_args(request: Request, settings: SlackSettings) -> dict[str, Any]:
    args: dict[str, Any] = dict(request.query_params)
    if request.method != "POST":
        return args
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    body = await request.body()
    if len(body) > settings.max_body_bytes:
        raise SlackError("request_too_large")
    if not body.strip():
        return args
    if content_type == "application/json":
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise SlackError("invalid_json") from exc
        if not isinstance(parsed, dict):
            raise SlackError("invalid_json")
        args.update(parsed)
    elif content_type == "application/x-www-form-urlencoded":
        try:
            args.update(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False))
        except UnicodeDecodeError as exc:
            raise SlackError("invalid_form_data") from exc
    else:
        # multipart/form-data is how Slack clients upload files, which Parley does not take.
        raise SlackError("invalid_form_data")
    return args


def bearer_token(request: Request, args: dict[str, Any]) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    token = args.get("token")
    return str(token) if token else None


def respond(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


async def _call(request: Request, method_name: str) -> JSONResponse:
    deps: Deps = request.app.state.deps
    settings = slack_settings(request)
    args = await read_args(request, settings)
    if method_name == "api.test":
        return respond({"ok": True, **api_test(Args(args))})
    method = METHODS.get(method_name)
    if method is None:
        return respond({"ok": False, "error": "unknown_method", "req_method": method_name})
    token = bearer_token(request, args)
    if token is None:
        raise SlackError("not_authed")
    caller = await authenticate_api_token(deps, token, kinds=method.tokens)
    wait = await deps.rate_limiter.acquire(
        f"slack:{caller.token.token_hash[:24]}", settings.rate_per_second, settings.rate_burst
    )
    if wait > 0:
        raise ratelimited(wait)
    ctx = Ctx(deps=deps, caller=caller, token=token, settings=settings, base_url=base_url(request, settings))
    args.pop("token", None)
    result = await method.handler(ctx, Args(args))
    return respond({"ok": True, **result})


@router.api_route("/api/{method_name}", methods=["GET", "POST"], include_in_schema=False)
async def web_api(method_name: str, request: Request) -> JSONResponse:
    """Any Slack Web API method (see docs/slack-compat.md for the supported ones)."""
    try:
        return await _call(request, method_name)
    except SlackError as exc:
        return respond(exc.body(), exc.status, exc.headers())
    except DomainError as exc:
        error = from_domain(exc)
        return respond(error.body(), error.status, error.headers())
    except Exception:
        # Slack's shape even for our own bugs, so clients raise SlackApiError, not a parse error.
        log.exception("Slack method %s failed", method_name)
        return respond({"ok": False, "error": "internal_error"})
