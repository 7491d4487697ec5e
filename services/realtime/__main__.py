"""`python -m services.realtime`: run the realtime service (see services/realtime/app.py)."""

from parley.composition import Parley
from parley.runtime.serve import run
from services.realtime import app

run("realtime", app.__doc__ or "", lambda settings: app.create_app(Parley(settings, "realtime")))
