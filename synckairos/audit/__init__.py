"""The durable audit trail: every committed change, once, in PostgreSQL.

* ``contract.py``: what the command path may ask of it (``Archive``,
  ``DurableSink``), so the node never imports PostgreSQL code;
* ``relay.py``: outbox (Redis stream) -> dramatiq, at least once;
* ``pipeline.py``, ``worker.py``: the dramatiq actor and its PostgreSQL writer,
  idempotent by event id, with poison isolation (one refused event is
  dead-lettered alone);
* ``records.py``: outbox entries and the rows they become (pure);
* ``durable.py``: the ``postgres`` durability level's writer on the request path;
* ``archive.py``: what recovery reads; ``recovery.py``: restore everything,
  reconcile Redis with PostgreSQL; ``requeue.py``: replay dead letters;
* ``migrate.py``, ``migrations/``: the schema.
"""
