"""Locust load tests of Parley (see loadtests/README.md): profiles, the seed, the locustfile,
the runner behind ``make loadtest`` and the report summary."""
