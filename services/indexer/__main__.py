"""`python -m services.indexer`: run the indexer consumer group (see services/indexer/consumer.py)."""

from fastapi import FastAPI

from parley.composition import Parley
from parley.runtime.serve import run
from parley.runtime.worker import consumer_app
from parley.settings import Settings
from services.indexer import consumer
from services.indexer.consumer import IndexerConsumer


def build(settings: Settings) -> FastAPI:
    parley = Parley(settings, "indexer")
    return consumer_app(
        parley, IndexerConsumer(parley.search, linger=settings.indexer_linger_ms / 1000), "search"
    )


run("indexer", consumer.__doc__ or "", build)
