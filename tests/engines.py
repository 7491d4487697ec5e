"""Which real engines a test run has.

A test that needs a real engine calls ``engine_url("redis")``: with ``PARLEY_REDIS_URL`` set it
gets the URL; without it the test is skipped, unless ``PARLEY_REQUIRE_ENGINES=1`` (CI), where a
missing engine fails the test instead of silently skipping it.
"""

from __future__ import annotations

import os

import pytest

ENGINE_VARS = {
    "mysql": "PARLEY_DATABASE_URL",
    "kafka": "PARLEY_KAFKA_BOOTSTRAP",
    "redis": "PARLEY_REDIS_URL",
    "elasticsearch": "PARLEY_ELASTICSEARCH_URL",
}


def engines_required() -> bool:
    return os.environ.get("PARLEY_REQUIRE_ENGINES") == "1"


def engine_url(engine: str) -> str:
    var = ENGINE_VARS[engine]
    # Tests read the real-engine URLs from PARLEY_TEST_* so that the embedded tests are not
    # switched to real engines by the same variables.
    url = os.environ.get(var.replace("PARLEY_", "PARLEY_TEST_"))
    if url:
        return url
    message = f"{engine} not configured (set {var.replace('PARLEY_', 'PARLEY_TEST_')})"
    if engines_required():
        pytest.fail(f"PARLEY_REQUIRE_ENGINES=1 but {message}")
    pytest.skip(message)
