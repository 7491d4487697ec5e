"""`python -m services.relay`: run the outbox relay (see services/relay/app.py)."""

from parley.composition import Parley
from parley.runtime.serve import run
from services.relay import app

run("relay", app.__doc__ or "", lambda settings: app.create_app(Parley(settings, "relay")))
