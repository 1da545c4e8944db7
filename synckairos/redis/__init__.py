"""The Redis wing: everything that knows Redis lives here, and nothing else does.

* ``keys``        every key and channel name (one module; the key schema)
* ``connection``  client factories (plain URL or Sentinel), the process's
                  primary view and the Sentinel ``PrimaryWatcher``
* ``store``       ``RedisStore``, the ``synckairos.store.Store`` on Redis
* ``pubsub``      ``RedisPubSub``, the ``synckairos.pubsub.PubSub`` on Redis
* ``ratelimit``   ``RedisRateLimiter``, the shared GCRA limiters
* ``outbox``      ``OutboxReader``, the audit relay's reads of the outbox stream
* ``broker``      the dramatiq broker of the audit pipeline
* ``lua/``        the scripts, beside their adapters (``gcra.lua`` is spliced
                  into every script that rate limits, so the GCRA is written once)

Redis-py errors are caught here and translated (``StoreUnavailable``, a
retry with backoff, a let-through); the layers above see only the contracts
of ``synckairos.store`` and ``synckairos.pubsub``. This package imports the
contracts, ``config``, ``metrics`` and ``exceptions``; never ``node``, the
HTTP/WebSocket layers or ``app``. Redis Cluster goes here next.
"""
