"""agentlog: a durable, auditable LLM agent whose source of truth is a Kafka log."""

__version__ = "0.1.0"
