"""The durable audit trail: outbox relay, dramatiq actor, PostgreSQL, recovery."""
