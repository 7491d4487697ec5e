"""Adapters: one module per engine per port (``<port>/memory.py``, ``<port>/redis.py``, ...).

Only the composition root imports from here; the domain, the ports and the services never do
(enforced by import-linter, see ``pyproject.toml``).
"""
