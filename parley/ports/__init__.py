"""Ports: one ``typing.Protocol`` per engine role. Each docstring states the guarantee an
adapter must give; ``tests/contract/`` runs the same suite against every adapter."""
