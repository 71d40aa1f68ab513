"""Error hierarchy: every error agentlog raises on purpose derives from AgentlogError."""


class AgentlogError(Exception):
    """Root of agentlog's own errors."""


class ConfigurationError(AgentlogError):
    """The environment or a file asks for something that cannot work."""


class BrokerError(AgentlogError):
    """The local Kafka broker could not be fetched, started, stopped or reached."""


class SchemaError(AgentlogError):
    """A message does not match its schema, or a schema cannot be registered."""


class IncompatibleSchemaError(SchemaError):
    """A different schema is already registered under the same subject and version."""


class InvalidMessageError(SchemaError):
    """A message cannot be decoded or validated; carries the reason for the dead-letter queue."""

    def __init__(self, reason: str, *, message_type: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message_type = message_type


class FencedError(AgentlogError):
    """A newer instance took over this service's transactional id: this process must stop."""


class StateOffsetAheadError(AgentlogError):
    """The local store has applied more of a partition than the group committed (offsets reset?)."""
