"""The domain: entities, events, errors and the actions that change state.

Nothing here imports an engine client; actions talk to engines only through ``parley.ports``.
"""
