"""Load-generation benchmarks for the SyncKairos HTTP API.

Run them with ``python -m benchmarks <scenario>`` (see ``benchmarks/README.md``).
Each scenario prints one JSON summary on stdout and its progress on stderr.

Modules:

- ``httpclient``: a minimal, fast asyncio HTTP/1.1 keep-alive client (the hot loop).
- ``stack``: starts and stops a private ``synckairos dev`` stack on a free port.
- ``procstat``: CPU accounting of the server process tree and of the load generator.
- ``stats``: exact latency percentiles.
- ``switch``: the "switch throughput and latency" scenario.
- ``deadlines``: the "server-side timer expiry" scenario (lag, misses, duplicates).
"""
