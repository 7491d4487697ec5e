"""Schemathesis against the live REST API: whatever a client sends, the answer is never a 5xx,
its status code is one the OpenAPI spec declares, and its body matches the declared schema.

Authenticated as a workspace owner; path parameters are either real ids of seeded objects (so
requests reach real rows, not only 404s) or generated ones, and every operation also gets
negative (schema-violating) input. Bounded: ``MAX_EXAMPLES`` per operation and mode, no
shrinking (each failure prints a curl line that reproduces it), destructive operations last.

Schemathesis is synchronous (requests); it runs in a worker thread while the server keeps
serving in the test's event loop.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.clients import ApiUser
from tests.support.server import RunningServer
from tests.support.world import make_world

pytestmark = [
    pytest.mark.slow,
    # Raised by schemathesis' own strategies (it uses `random` inside them), not by this test.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

MAX_EXAMPLES = int(os.environ.get("PARLEY_SCHEMATHESIS_EXAMPLES", "8"))
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]
# Operations that destroy what the others use (the seeded message, the membership, the token)
# run last, so the rest keeps reaching real objects.
DESTRUCTIVE = re.compile(r"^(DELETE |POST .*/(leave|logout)$)")


@dataclass(frozen=True)
class Seed:
    headers: dict[str, str]
    logout_headers: dict[str, str]
    path_ids: dict[str, str]


async def _seed(base_url: str) -> Seed:
    world = await make_world(base_url)
    alice, bob = world.users
    message = await alice.post(f"/conversations/{world.channel_id}/messages", {"text": "seeded"}, expect=201)
    await alice.post(f"/messages/{message['id']}/reactions", {"emoji": "thumbsup"}, expect=204)
    victim = await ApiUser.signup(base_url)
    seed = Seed(
        headers={"Authorization": f"Bearer {alice.token}"},
        # Logout revokes the token it is called with: give it one nobody else needs.
        logout_headers={"Authorization": f"Bearer {victim.token}"},
        path_ids={
            "workspace_id": world.workspace_id,
            "conversation_id": world.channel_id,
            "message_id": message["id"],
            "user_id": bob.id,
            "emoji": "thumbsup",
        },
    )
    await world.close()
    await victim.close()
    return seed


def _operations(schema: Any) -> Iterator[Any]:
    operations = [result.ok() for result in schema.get_all_operations()]
    rest = [op for op in operations if op.path.startswith("/api/v1/")]
    yield from sorted(rest, key=lambda op: bool(DESTRUCTIVE.match(op.label)))


def _fuzz(strategy: Any, session: requests.Session, headers: dict[str, str]) -> int:
    """Run one operation's strategy; returns the number of requests sent (raises on a failure)."""
    calls = 0

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        nonlocal calls
        calls += 1
        case.call_and_validate(session=session, headers=headers, checks=CHECKS)

    run()
    return calls


def _run_schemathesis(base_url: str, seed: Seed) -> tuple[list[str], int]:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    session = requests.Session()
    failures: list[str] = []
    calls = 0
    for operation in _operations(schema):
        headers = seed.logout_headers if operation.label.endswith("/logout") else seed.headers
        names = re.findall(r"{(\w+)}", operation.path)
        real_ids = {name: seed.path_ids[name] for name in names if name in seed.path_ids}
        variants = [("positive, real ids", GenerationMode.POSITIVE, real_ids)] if real_ids else []
        variants += [
            ("positive", GenerationMode.POSITIVE, None),
            ("negative", GenerationMode.NEGATIVE, None),
        ]
        for label, mode, path_parameters in variants:
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)
            try:
                calls += _fuzz(strategy, session, headers)
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup is a Base one
                failures.append(f"── {operation.label} [{label}]\n{exc}")
    return failures, calls


async def test_rest_api_answers_every_input_as_its_openapi_schema_says(server: RunningServer) -> None:
    seed = await _seed(server.url)
    started = time.monotonic()
    failures, calls = await asyncio.to_thread(_run_schemathesis, server.url, seed)
    elapsed = time.monotonic() - started
    assert calls > 0, "schemathesis generated no requests"
    assert not failures, f"{len(failures)} failing operation(s) in {calls} calls:\n\n" + "\n\n".join(failures)
    assert (await ApiUser.signup(server.url)).token, "the server still serves after the run"
    print(f"schemathesis: {calls} calls in {elapsed:.1f} s")
