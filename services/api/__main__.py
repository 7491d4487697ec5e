"""`python -m services.api`: run the api service (see services/api/app.py)."""

from parley.composition import Parley
from parley.runtime.serve import run
from services.api import app

run("api", app.__doc__ or "", lambda settings: app.create_app(Parley(settings, "api")))
