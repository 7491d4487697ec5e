"""Adapters of the cache-side ports (``parley.ports.cache``): history cache, presence, rate limits.

``memory`` is the embedded default (one process only); ``redis`` is the real engine.
"""
