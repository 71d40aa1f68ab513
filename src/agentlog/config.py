"""Settings read from the environment once and passed down explicitly."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agentlog.errors import ConfigurationError

_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9._-]*$")

# AGENTLOG_KAFKA_<NAME> -> librdkafka property: the documented way to reach a secured cluster.
SECURITY_ENV = {
    "AGENTLOG_KAFKA_SECURITY_PROTOCOL": "security.protocol",
    "AGENTLOG_KAFKA_SASL_MECHANISM": "sasl.mechanism",
    "AGENTLOG_KAFKA_SASL_USERNAME": "sasl.username",
    "AGENTLOG_KAFKA_SASL_PASSWORD": "sasl.password",
    "AGENTLOG_KAFKA_SSL_CA_LOCATION": "ssl.ca.location",
    "AGENTLOG_KAFKA_SSL_CERTIFICATE_LOCATION": "ssl.certificate.location",
    "AGENTLOG_KAFKA_SSL_KEY_LOCATION": "ssl.key.location",
    "AGENTLOG_KAFKA_SSL_KEY_PASSWORD": "ssl.key.password",
}
PROPERTIES_FILE_ENV = "AGENTLOG_KAFKA_PROPERTIES_FILE"
# Env vars whose values are secrets: never log them (nor the properties file's sasl.password).
SECRET_ENV = ("AGENTLOG_KAFKA_SASL_PASSWORD", "AGENTLOG_KAFKA_SSL_KEY_PASSWORD", "AGENTLOG_RDKAFKA_SASL_PASSWORD",
              "AGENTLOG_RDKAFKA_SSL_KEY_PASSWORD")
_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


def project_root() -> Path:
    """The directory holding var/ and data/: AGENTLOG_HOME, else the current directory."""
    return Path(os.environ.get("AGENTLOG_HOME", os.getcwd())).resolve()


def var_dir_from_env(env: Mapping[str, str] | None = None) -> Path:
    """Where state lives: AGENTLOG_VAR_DIR, else var/ under the project root (see Settings.var_dir)."""
    env = os.environ if env is None else env
    return Path(env.get("AGENTLOG_VAR_DIR", str(project_root() / "var"))).resolve()


def positive_number(env: Mapping[str, str], name: str, default: float) -> float:
    """The number in env var `name`, or `default` when unset or empty.

    Raises a ConfigurationError naming the variable for anything that is not a positive number, so
    a typo stops the process at start-up instead of becoming a zero timeout or an endless wait.
    """
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as error:
        raise ConfigurationError(f"{name} must be a number, not {raw!r}") from error
    if value <= 0:
        raise ConfigurationError(f"{name} must be positive, not {raw!r}")
    return value


def positive_whole_number(env: Mapping[str, str], name: str, default: int) -> int:
    """`positive_number` for counts: a fraction is refused too, naming the variable."""
    value = positive_number(env, name, default)
    if not float(value).is_integer():
        raise ConfigurationError(f"{name} must be a whole number, not {env.get(name)!r}")
    return int(value)


@dataclass(frozen=True)
class Settings:
    """Everything a service or the CLI needs to know about its surroundings."""

    var_dir: Path
    bootstrap_servers: str | None
    external_cluster: bool
    topic_prefix: str = ""
    instance_id: str = "0"
    extra_kafka_config: dict[str, str] = field(default_factory=dict, repr=False)  # may hold passwords

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
        from agentlog.kafka.cluster import LocalCluster

        running = LocalBroker(self.kafka_dir).running_bootstrap() or LocalCluster(self.kafka_dir).running_bootstrap()
        if running is None:
            raise ConfigurationError(
                "no Kafka cluster: set KAFKA_BOOTSTRAP_SERVERS or start the local broker "
                "with `agentlog kafka start`"
            )
        return running

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        state_root = var_dir_from_env(env)
        bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS") or None
        prefix = env.get("AGENTLOG_TOPIC_PREFIX", "")
        if not _PREFIX_PATTERN.match(prefix):
            raise ConfigurationError(f"AGENTLOG_TOPIC_PREFIX {prefix!r} may hold only letters, digits, . _ -")
        local_cli = None if bootstrap else credentials_path(state_root / "kafka", "cli")
        extra = {**security_config(env, default_file=local_cli),
                 **{key[len("AGENTLOG_RDKAFKA_") :].lower().replace("_", "."): value
                    for key, value in env.items() if key.startswith("AGENTLOG_RDKAFKA_")}}
        return cls(
            var_dir=state_root,
            bootstrap_servers=bootstrap,
            external_cluster=bootstrap is not None,
            topic_prefix=prefix,
            instance_id=env.get("AGENTLOG_INSTANCE", "0"),
            extra_kafka_config=extra,
        )


def credentials_path(kafka_dir: Path, principal: str) -> Path:
    """Where `agentlog kafka start --secure` writes a principal's librdkafka properties (0600)."""
    return kafka_dir / "secure" / "clients" / f"{principal}.properties"


def parse_properties(text: str) -> dict[str, str]:
    """`key=value` lines (Java/librdkafka properties; `#` and `!` start comments)."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ConfigurationError(f"properties line {line.split()[0]!r}... has no '='")
        result[key.strip()] = value.strip()
    return result


def security_config(env: dict[str, str], default_file: Path | None = None) -> dict[str, str]:
    """librdkafka security settings: AGENTLOG_KAFKA_PROPERTIES_FILE, overridden by AGENTLOG_KAFKA_*.

    Without either, `default_file` (the local secured broker's `cli` credentials) is used when it
    exists, so the CLI needs no setup against `agentlog kafka start --secure`. Checked here, so a
    typo fails at start-up with the variable's name instead of as a vague connection error later.
    """
    named = env.get(PROPERTIES_FILE_ENV)
    explicit = {prop: env[var] for var, prop in SECURITY_ENV.items() if env.get(var)}
    path = Path(named) if named else default_file if not explicit and default_file is not None else None
    config: dict[str, str] = {}
    if path is not None and (named or path.is_file()):
        try:
            config = parse_properties(path.read_text())
        except OSError as error:
            raise ConfigurationError(f"{PROPERTIES_FILE_ENV}: cannot read {path}: {error.strerror}") from error
    config.update(explicit)
    _check_security(config)
    return config


def _check_security(config: dict[str, str]) -> None:
    protocol = config.get("security.protocol", "PLAINTEXT").upper()
    if protocol not in _PROTOCOLS:
        raise ConfigurationError(f"security.protocol {protocol!r} is not one of {', '.join(_PROTOCOLS)}")
    if protocol.startswith("SASL"):
        mechanism = config.get("sasl.mechanism", "")
        if mechanism.upper() not in _MECHANISMS:
            raise ConfigurationError(f"{protocol} needs AGENTLOG_KAFKA_SASL_MECHANISM, one of {', '.join(_MECHANISMS)}"
                                     f" (got {mechanism!r})")
        if not config.get("sasl.username") or not config.get("sasl.password"):
            raise ConfigurationError(f"{protocol} needs AGENTLOG_KAFKA_SASL_USERNAME and AGENTLOG_KAFKA_SASL_PASSWORD")
    if bool(config.get("ssl.certificate.location")) != bool(config.get("ssl.key.location")):
        raise ConfigurationError("mutual TLS needs both AGENTLOG_KAFKA_SSL_CERTIFICATE_LOCATION and "
                                 "AGENTLOG_KAFKA_SSL_KEY_LOCATION")
