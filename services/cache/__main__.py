"""`python -m services.cache`: run the cache consumer group (see services/cache/consumer.py)."""

from fastapi import FastAPI

from parley.composition import Parley
from parley.runtime.serve import run
from parley.runtime.worker import consumer_app
from parley.settings import Settings
from services.cache import consumer
from services.cache.consumer import HistoryCacheConsumer


def build(settings: Settings) -> FastAPI:
    parley = Parley(settings, "cache")
    return consumer_app(parley, HistoryCacheConsumer(parley.history_cache, keep=settings.history_cache_size))


run("cache", consumer.__doc__ or "", build)
