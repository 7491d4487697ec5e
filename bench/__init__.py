"""Parley's benchmark harness: figures, not timed tests.

Each scenario starts its own Parley all-in-one as a child process (fresh data directory, or a
fresh MariaDB database, Kafka topics and Elasticsearch index on real engines), drives it over
loopback with async clients (``bench/wire.py``'s lean WebSocket client + ``httpx``) from this one
process, stops it, and
reports the median of several runs. Entry point: ``python -m bench.run --help``; what each
scenario measures, and how to read it, is in ``docs/benchmarks.md``. ``history-1m`` is the
exception to "fresh per run": it seeds a million messages once per mode (``python -m
bench.bulk_seed``: accounts and channels through the API, messages straight into the store, then
the search index rebuilt) and restarts the server on that data for each run.
"""
