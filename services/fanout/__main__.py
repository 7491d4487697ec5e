"""`python -m services.fanout`: run the fanout consumer group (see services/fanout/consumer.py)."""

from fastapi import FastAPI

from parley.composition import Parley
from parley.runtime.serve import run
from parley.runtime.worker import consumer_app
from parley.settings import Settings
from services.fanout import consumer
from services.fanout.consumer import FanoutConsumer


def build(settings: Settings) -> FastAPI:
    parley = Parley(settings, "fanout")
    return consumer_app(parley, FanoutConsumer(parley.pubsub), "pubsub")


run("fanout", consumer.__doc__ or "", build)
