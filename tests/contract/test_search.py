"""Contract of the search port (``parley.ports.search``), run against every adapter.

The same tests run on SQLite FTS5 (a file in ``tmp_path``) and on Elasticsearch (from
``PARLEY_TEST_ELASTICSEARCH_URL``, a fresh alias/index/template per test, deleted afterwards).
Every test calls ``refresh()`` before searching, as the port asks.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from parley.adapters.search.elasticsearch import ElasticsearchSearchIndex
from parley.adapters.search.fts5 import Fts5SearchIndex
from parley.ports.search import (
    HIGHLIGHT_END,
    HIGHLIGHT_START,
    SearchDoc,
    SearchIndex,
    SearchQuery,
    SearchResult,
)
from tests.engines import engine_url, engines_required

GENERAL = 1  # the conversation the searcher may read
SECRET = 2  # a conversation the searcher is not a member of
ALICE = 10
BOB = 11
WORKSPACE = 7
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

IndexFactory = Callable[[], Awaitable[SearchIndex]]


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def doc(
    message_id: int,
    text: str,
    *,
    conversation: int = GENERAL,
    user: int = ALICE,
    minute: int | None = None,
) -> SearchDoc:
    return SearchDoc(
        message_id=message_id,
        conversation_id=conversation,
        workspace_id=WORKSPACE,
        user_id=user,
        text=text,
        created_at=at(message_id if minute is None else minute),
    )


@pytest.fixture(params=["fts5", "elasticsearch"])
async def open_index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[IndexFactory]:
    """A factory of started adapters that all share one fresh index; all closed after the test."""
    opened: list[SearchIndex] = []
    if request.param == "fts5":
        path = tmp_path / "search.sqlite3"

        def build() -> SearchIndex:
            return Fts5SearchIndex(path)
    else:
        url = engine_url("elasticsearch")
        name = f"parley-test-{uuid.uuid4().hex[:12]}"

        def build() -> SearchIndex:
            return ElasticsearchSearchIndex(url, index=name)

    async def open_one() -> SearchIndex:
        index = build()
        await index.start()
        opened.append(index)
        return index

    yield open_one
    if opened and isinstance(opened[0], ElasticsearchSearchIndex):
        await opened[0].drop()
    for index in opened:
        await index.close()


@pytest.fixture
async def search_index(open_index: IndexFactory) -> SearchIndex:
    return await open_index()


async def indexed(search_index: SearchIndex, *docs: SearchDoc) -> None:
    await search_index.index(list(docs))
    await search_index.refresh()


async def find(
    search_index: SearchIndex, text: str, conversations: Sequence[int] = (GENERAL,), **filters: object
) -> SearchResult:
    return await search_index.search(SearchQuery(text=text, conversation_ids=list(conversations), **filters))  # type: ignore[arg-type]


def ids(result: SearchResult) -> list[int]:
    return [hit.message_id for hit in result.hits]


def marked(word: str) -> str:
    return f"{HIGHLIGHT_START}{word}{HIGHLIGHT_END}"


async def test_finds_a_message_by_a_word_and_highlights_that_word(search_index: SearchIndex) -> None:
    await indexed(search_index, doc(1, "the build is green again"), doc(2, "lunch at noon?"))

    result = await find(search_index, "green")

    assert result.total == 1
    [hit] = result.hits
    assert (hit.message_id, hit.conversation_id, hit.user_id) == (1, GENERAL, ALICE)
    assert hit.created_at == at(1)
    assert hit.highlight == f"the build is {marked('green')} again"


async def test_matching_ignores_case(search_index: SearchIndex) -> None:
    await indexed(search_index, doc(1, "Kafka Rebalance finished"))

    result = await find(search_index, "kafka REBALANCE")

    assert ids(result) == [1]
    assert result.hits[0].highlight == f"{marked('Kafka')} {marked('Rebalance')} finished"


async def test_matching_folds_accents_and_word_endings(search_index: SearchIndex) -> None:
    if isinstance(search_index, ElasticsearchSearchIndex) and not search_index.folds_and_stems:
        # A node without analysis-common cannot fold or stem; CI's node must (no silent skip there).
        message = "this Elasticsearch node has no analysis-common module (no folding, no stemming)"
        if engines_required():
            pytest.fail(f"PARLEY_REQUIRE_ENGINES=1 but {message}")
        pytest.skip(message)
    await indexed(search_index, doc(1, "We deployed the café menu"))

    assert ids(await find(search_index, "deploy")) == [1]
    assert ids(await find(search_index, "cafe")) == [1]


async def test_every_word_of_the_query_must_occur(search_index: SearchIndex) -> None:
    await indexed(search_index, doc(1, "release notes for May"), doc(2, "the release is out"))

    result = await find(search_index, "release notes")

    assert ids(result) == [1]
    assert result.total == 1


async def test_indexing_the_same_message_again_gives_one_hit(search_index: SearchIndex) -> None:
    message = doc(1, "retry storms are fun")
    await indexed(search_index, message)
    await indexed(search_index, message, message)
    await indexed(search_index, message)

    result = await find(search_index, "storms")

    assert ids(result) == [1]
    assert result.total == 1


async def test_an_edited_message_is_found_by_its_new_text_only(search_index: SearchIndex) -> None:
    await indexed(search_index, doc(1, "meet me at the lemon stand"))
    await indexed(search_index, doc(1, "meet me at the melon stand"))

    assert (await find(search_index, "lemon")).total == 0
    edited = await find(search_index, "melon")
    assert ids(edited) == [1]
    assert edited.hits[0].highlight == f"meet me at the {marked('melon')} stand"


async def test_a_deleted_message_is_not_found(search_index: SearchIndex) -> None:
    await indexed(search_index, doc(1, "secret plans, delete me"), doc(2, "public plans"))

    await search_index.delete([1])
    await search_index.delete([1, 999])  # replayed and unknown ids are not errors
    await search_index.delete([])
    await search_index.refresh()

    result = await find(search_index, "plans")
    assert ids(result) == [2]
    assert result.total == 1


async def test_messages_outside_the_readable_conversations_are_never_returned(
    search_index: SearchIndex,
) -> None:
    await indexed(
        search_index,
        doc(1, "budget for the offsite", conversation=GENERAL),
        doc(2, "budget cuts: layoffs", conversation=SECRET),
    )

    result = await find(search_index, "budget", conversations=[GENERAL])

    assert ids(result) == [1]
    assert result.total == 1  # not even counted
    both = await find(search_index, "budget", conversations=[GENERAL, SECRET])
    assert sorted(ids(both)) == [1, 2]


async def test_no_readable_conversation_means_no_hits(search_index: SearchIndex) -> None:
    await indexed(search_index, doc(1, "anyone here?"))

    result = await find(search_index, "anyone", conversations=[])

    assert result == SearchResult(total=0, hits=[])


async def test_from_user_keeps_only_that_users_messages(search_index: SearchIndex) -> None:
    await indexed(search_index, doc(1, "standup in five", user=ALICE), doc(2, "standup moved", user=BOB))

    result = await find(search_index, "standup", from_user_id=BOB)

    assert ids(result) == [2]
    assert result.total == 1


async def test_before_and_after_bound_the_creation_time_strictly(search_index: SearchIndex) -> None:
    await indexed(search_index, doc(1, "deploy one", minute=10), doc(2, "deploy two", minute=20))
    await indexed(search_index, doc(3, "deploy three", minute=30))

    assert sorted(ids(await find(search_index, "deploy", after=at(10)))) == [2, 3]
    assert sorted(ids(await find(search_index, "deploy", before=at(30)))) == [1, 2]
    assert ids(await find(search_index, "deploy", after=at(10), before=at(30))) == [2]
    assert ids(await find(search_index, "deploy", after=at(19), before=at(21))) == [2]
    assert (await find(search_index, "deploy", after=at(30))).total == 0


async def test_pages_are_newest_first_among_equals_and_total_counts_all(search_index: SearchIndex) -> None:
    await indexed(search_index, *(doc(mid, "weekly sync notes") for mid in range(1, 6)))

    pages = [await find(search_index, "sync", limit=2, offset=offset) for offset in (0, 2, 4, 10)]

    assert [ids(page) for page in pages] == [[5, 4], [3, 2], [1], []]
    assert [page.total for page in pages] == [5, 5, 5, 5]


async def test_a_closer_match_ranks_above_a_newer_looser_one(search_index: SearchIndex) -> None:
    long_text = "release " + " ".join(f"filler{n}" for n in range(30))
    await indexed(search_index, doc(1, "release notes", minute=1), doc(2, long_text, minute=2))

    result = await find(search_index, "release")

    assert ids(result) == [1, 2]


async def test_data_survives_a_restart_of_the_adapter(open_index: IndexFactory) -> None:
    first = await open_index()
    await indexed(first, doc(1, "persist this thought"))
    await first.close()

    second = await open_index()
    await second.ping()

    assert ids(await find(second, "thought")) == [1]


HOSTILE_QUERIES = [
    "",
    "   ",
    '"',
    '""',
    '"unterminated',
    "'",
    "(",
    ")",
    "((green",
    "AND",
    "OR",
    "NOT",
    "green AND",
    "AND green OR",
    "NEAR(green build)",
    "*",
    "green*",
    "-",
    "-green",
    "+green",
    "^",
    "text:green",
    "{green}",
    "[a TO z]",
    "\\",
    "/green/",
    "' OR 1=1 --",
    "🎉",
    "green 🎉",
    "grün ß İ",
    "\x00",
    "green\x00build",
    HIGHLIGHT_START + "green" + HIGHLIGHT_END,
    " ".join(["green"] * 2000),
    "x" * 10_000,
]


@pytest.mark.parametrize("text", HOSTILE_QUERIES, ids=range(len(HOSTILE_QUERIES)))
async def test_any_user_text_is_a_query_never_an_error(search_index: SearchIndex, text: str) -> None:
    await indexed(search_index, doc(1, "the build is green"), doc(2, "a secret green", conversation=SECRET))

    result = await find(search_index, text)

    assert 2 not in ids(result)
    assert result.total == len(result.hits) <= 1


@pytest.mark.parametrize("text", ['"green"', "(green)", "green*", "-green", "green!", "¿green?"])
async def test_punctuation_around_a_word_does_not_hide_it(search_index: SearchIndex, text: str) -> None:
    await indexed(search_index, doc(1, "the build is green"))

    assert ids(await find(search_index, text)) == [1]


# Elasticsearch only: rebuilding into a new versioned index behind the alias.


@pytest.fixture
async def elasticsearch_index() -> AsyncIterator[ElasticsearchSearchIndex]:
    index = ElasticsearchSearchIndex(
        engine_url("elasticsearch"), index=f"parley-test-{uuid.uuid4().hex[:12]}"
    )
    await index.start()
    yield index
    await index.drop()
    await index.close()


async def batches(*groups: Sequence[SearchDoc]) -> AsyncIterator[Sequence[SearchDoc]]:
    for group in groups:
        yield group


async def test_rebuild_swaps_in_a_new_index_with_only_the_given_documents(
    elasticsearch_index: ElasticsearchSearchIndex,
) -> None:
    await indexed(elasticsearch_index, doc(1, "stale message about kites"))

    loaded = await elasticsearch_index.rebuild(
        batches([doc(2, "fresh kites"), doc(3, "more kites")], [], [doc(4, "kites again")])
    )

    assert loaded == 3
    result = await find(elasticsearch_index, "kites")  # visible at once: rebuild refreshed
    assert sorted(ids(result)) == [2, 3, 4]
    # Writes after the swap go to the new index, and a restart keeps the rebuilt one.
    await indexed(elasticsearch_index, doc(5, "kites after the swap"))
    await elasticsearch_index.start()
    assert sorted(ids(await find(elasticsearch_index, "kites"))) == [2, 3, 4, 5]

    assert await elasticsearch_index.rebuild(batches([doc(6, "only kites now")])) == 1
    assert ids(await find(elasticsearch_index, "kites")) == [6]
