"""Parley's services, one package each. Each runs as its own process
(``python -m services.<name>``); ``services.allinone`` runs them all in one event loop."""
