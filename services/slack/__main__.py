"""`python -m services.slack`: run the Slack-compatible facade (see services/slack/app.py)."""

from parley.composition import Parley
from parley.runtime.serve import run
from services.slack import app

run("slack", app.__doc__ or "", lambda settings: app.create_app(Parley(settings, "slack")))
