"""`python -m services.slack.admin`: create bots and user tokens from the command line.

Runs against the store the settings point at (``PARLEY_DATABASE_URL``, or the embedded SQLite
database under ``PARLEY_DATA_DIR``), as the operator: no login needed. Tokens are printed
once; only their hashes are stored.

    python -m services.slack.admin create-bot --workspace acme --name helper
    python -m services.slack.admin user-token --workspace acme --username alice
    python -m services.slack.admin revoke xoxb-…
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

from parley.composition import Parley
from parley.domain.actions import api_tokens, bots, lookups
from parley.domain.errors import DomainError
from parley.domain.integrations import DEFAULT_BOT_EVENTS, KNOWN_BOT_EVENTS
from parley.settings import get_settings
from services.slack import ids
from services.slack.tokens import bot_public


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m services.slack.admin", description=__doc__.split("\n\n")[0]
    )
    commands = root.add_subparsers(dest="command", required=True)
    bot = commands.add_parser("create-bot", help="create a bot user; print its xoxb and xapp tokens")
    bot.add_argument("--workspace", required=True, help="workspace slug")
    bot.add_argument("--name", required=True, help="the bot's username (2-32 of a-z 0-9 . _ -)")
    bot.add_argument(
        "--events",
        default=",".join(DEFAULT_BOT_EVENTS),
        help="comma-separated event types it receives (default %(default)s; known: "
        + ",".join(sorted(KNOWN_BOT_EVENTS))
        + ")",
    )
    bot.add_argument("--json", action="store_true", help="print JSON")
    user = commands.add_parser("user-token", help="issue a user token (xoxp) for a member of a workspace")
    user.add_argument("--workspace", required=True, help="workspace slug")
    user.add_argument("--username", required=True)
    user.add_argument("--json", action="store_true", help="print JSON")
    revoke = commands.add_parser("revoke", help="revoke a token")
    revoke.add_argument("token")
    return root


async def run(args: argparse.Namespace) -> dict[str, object]:
    parley = Parley(get_settings(), "tool")
    await parley.start("store")
    try:
        deps = parley.deps
        if args.command == "create-bot":
            workspace = await bots.workspace_by_slug(deps, args.workspace)
            events = [e for e in args.events.split(",") if e.strip()]
            created = await bots.create_bot(deps, None, workspace.id, args.name, event_types=events)
            return bot_public(created).model_dump()
        if args.command == "user-token":
            workspace = await bots.workspace_by_slug(deps, args.workspace)
            user = await lookups.user_by_username(deps, args.username)
            token = await api_tokens.issue_user_token(deps, user, workspace.id)
            return {"token": token, "team_id": ids.team_id(workspace.id), "user_id": ids.user_id(user.id)}
        revoked = await api_tokens.revoke_api_token(deps, args.token)
        return {"revoked": revoked}
    finally:
        await parley.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result = asyncio.run(run(args))
    except DomainError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    if getattr(args, "json", False) or args.command == "revoke":
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key + ':':<13} {value if not isinstance(value, list) else ','.join(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
