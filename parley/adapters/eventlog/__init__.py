"""Adapters of the event log port (:mod:`parley.ports.eventlog`).

``embedded`` keeps the log in a SQLite file of its own (one process only); ``kafka`` uses Apache
Kafka through aiokafka. Both place a key in the same partition number (:mod:`.partitioning`).
"""
