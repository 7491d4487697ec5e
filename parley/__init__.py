"""Parley core: the shared domain, its ports (one Protocol per engine), the adapters and the
composition root that picks them from settings.

Read in this order: ``domain`` (what Parley does) → ``ports`` (what it needs from engines) →
``adapters`` (how each engine provides it) → ``composition`` (which ones a process gets).
"""
