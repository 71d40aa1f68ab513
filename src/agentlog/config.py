"""Settings read from the environment once and passed down explicitly."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from agentlog.errors import ConfigurationError

_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9._-]*$")


def project_root() -> Path:
    """The directory holding var/ and data/: AGENTLOG_HOME, else the current directory."""
    return Path(os.environ.get("AGENTLOG_HOME", os.getcwd())).resolve()


@dataclass(frozen=True)
class Settings:
    """Everything a service or the CLI needs to know about its surroundings."""

    var_dir: Path
    bootstrap_servers: str | None
    external_cluster: bool
    topic_prefix: str = ""
    instance_id: str = "0"
    extra_kafka_config: dict[str, str] = field(default_factory=dict)

    @property
    def kafka_dir(self) -> Path:
        return self.var_dir / "kafka"

    @property
    def state_dir(self) -> Path:
        return self.var_dir / "state"

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "log"

    def topic(self, name: str) -> str:
        """The physical topic name: a prefix lets several deployments (or tests) share a cluster."""
        return f"{self.topic_prefix}{name}"

    def group(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def require_bootstrap(self) -> str:
        if self.bootstrap_servers:
            return self.bootstrap_servers
        from agentlog.kafka.broker import LocalBroker

        running = LocalBroker(self.kafka_dir).running_bootstrap()
        if running is None:
            raise ConfigurationError(
                "no Kafka cluster: set KAFKA_BOOTSTRAP_SERVERS or start the local broker "
                "with `agentlog kafka start`"
            )
        return running

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        var_dir = Path(env.get("AGENTLOG_VAR_DIR", str(project_root() / "var"))).resolve()
        bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS") or None
        prefix = env.get("AGENTLOG_TOPIC_PREFIX", "")
        if not _PREFIX_PATTERN.match(prefix):
            raise ConfigurationError(f"AGENTLOG_TOPIC_PREFIX {prefix!r} may hold only letters, digits, . _ -")
        extra = {
            key[len("AGENTLOG_RDKAFKA_") :].lower().replace("_", "."): value
            for key, value in env.items()
            if key.startswith("AGENTLOG_RDKAFKA_")
        }
        return cls(
            var_dir=var_dir,
            bootstrap_servers=bootstrap,
            external_cluster=bootstrap is not None,
            topic_prefix=prefix,
            instance_id=env.get("AGENTLOG_INSTANCE", "0"),
            extra_kafka_config=extra,
        )
