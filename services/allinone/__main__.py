"""`python -m services.allinone`: the whole of Parley in one process (see services/allinone/app.py)."""

from parley.composition import Parley
from parley.runtime.serve import run
from services.allinone import app

run("allinone", app.__doc__ or "", lambda settings: app.create_app(Parley(settings, "allinone")))
