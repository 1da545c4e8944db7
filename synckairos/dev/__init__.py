"""Development stack: what ``synckairos dev`` needs and production never runs.

:mod:`synckairos.dev.embedded` starts private ``redis-server`` and PostgreSQL 15
processes on free loopback ports in temporary directories (``EmbeddedRedis``,
``EmbeddedPostgres``, ``free_port``). ``synckairos dev`` uses them when no
Redis or database is configured; the tests and the benchmarks use them as
fixtures.

It ships in the wheel (``synckairos dev`` works from an installed package) but
stands apart from the runtime: ``serve``, ``worker`` and every other command
never import it (``cli.py`` imports it inside ``dev`` only; a test checks it),
and nothing here imports the server. Fixtures that need the source tree (the
Sentinel topology driver, ``benchmarks/sentinel_topology.py``) live outside
the package.
"""
