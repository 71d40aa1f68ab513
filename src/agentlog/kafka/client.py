"""librdkafka configuration for every producer, consumer and admin client agentlog makes.

One place decides the settings that the exactly-once protocol depends on; the security settings
come from Settings (AGENTLOG_KAFKA_*, a properties file, AGENTLOG_RDKAFKA_* passthrough).

On a secured cluster librdkafka reports a refused password only as an error event and then fails
later with a vague "broker transport failure"; a refused write only to a delivery callback nobody
may be listening to. So secured clients raise both at once, naming the cause.
"""

from __future__ import annotations

import os
import re
import time
from functools import partial
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from confluent_kafka.admin import AdminClient

from agentlog.config import PROPERTIES_FILE_ENV, Settings
from agentlog.errors import ConfigurationError
from agentlog.kafka.topics import DEAD_LETTER_MAX_BYTES

_REFUSALS = {KafkaError._AUTHENTICATION: "authentication", KafkaError._SSL: "TLS handshake"}
_AUTHORIZATION = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED,
                  KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED}
# OpenSSL's words for an alert from the peer, e.g. the broker rejecting our certificate (mutual TLS)
_TLS_ALERT = re.compile(r"\b(ssl|tls)\S*\s+alert\b", re.IGNORECASE)
_verified: set[int] = set()  # hashes of client configs already probed (no secret is kept)


class KafkaAccessError(ConfigurationError):
    """The cluster refused these credentials (authentication) or this principal's request (authorization)."""


def refusal(error: KafkaError, who: str, *, mid_run: bool = False) -> KafkaAccessError | None:
    """The clear error for a refused connection or request; None for anything that may pass.
    `mid_run`: a TLS error after the start-up probe may be a dropped connection (a broker restart)."""
    code = error.code()
    if code == KafkaError._TRANSPORT and _TLS_ALERT.search(error.str()):  # reported as a dropped connection
        code = KafkaError._SSL
    if mid_run and code == KafkaError._SSL:
        return None
    if code in _REFUSALS:
        return KafkaAccessError(f"Kafka refused {_REFUSALS[code]} of {who}: {error.str()} (check the "
                                f"AGENTLOG_KAFKA_* settings or {PROPERTIES_FILE_ENV})")
    if code in _AUTHORIZATION:
        return KafkaAccessError(f"Kafka refused authorization: {who} may not do this ({error.str()}); "
                                "its ACLs do not allow it")
    return None


def _identity(config: dict[str, Any]) -> str:
    user = config.get("sasl.username")
    return f"user {user!r}" if user else f"the certificate {config.get('ssl.certificate.location')}"


def _raise_refusal(who: str, error: KafkaError | None, _message: Message | None = None) -> None:
    """error_cb and on_delivery of secured clients (a TLS error mid-run may be a dropped connection)."""
    raised = refusal(error, who, mid_run=True) if error is not None else None
    if raised is not None:
        raise raised


def _check_access(config: dict[str, Any], timeout: float = 15.0) -> None:
    """Once per process and identity: connect, and raise if the cluster refuses the credentials.

    Other failures (a broker still starting) are left to the caller's own retries and deadlines, and
    the probe is not repeated for the next client: a later refusal still raises through error_cb.
    """
    key = hash(frozenset((k, str(v)) for k, v in config.items()))
    if key in _verified:
        return
    seen: list[KafkaError] = []
    probe: dict[str, Any] = {**config, "error_cb": seen.append, "log_level": 2}
    admin = AdminClient(probe)
    deadline = time.monotonic() + timeout
    while True:  # short metadata requests: a refusal shows up in `seen` within a second
        try:
            admin.list_topics(timeout=1)
        except KafkaException:
            admin.poll(0)
            for error in seen:
                raised = refusal(error, _identity(config))
                if raised is not None:
                    raise raised from None
            if time.monotonic() < deadline:
                continue
        _verified.add(key)
        return


def base_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {"bootstrap.servers": settings.require_bootstrap()}
    config.update(settings.extra_kafka_config)
    if config.get("sasl.username") or config.get("ssl.certificate.location"):
        _check_access(config)
        config["error_cb"] = partial(_raise_refusal, _identity(config))
    return config


def producer_config(settings: Settings, client_id: str) -> dict[str, Any]:
    """An idempotent producer; murmur2 partitioning so Java and Python clients agree on partitions."""
    config = base_config(settings)
    config.update({
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 1,
        "partitioner": "murmur2_random",
        # room for a dead letter of the largest message the broker accepts (the topics keep their 1 MB limit)
        "message.max.bytes": DEAD_LETTER_MAX_BYTES + 64 * 1024,
    })
    if "error_cb" in config:  # secured: a refused write raises from flush() instead of vanishing
        config["on_delivery"] = partial(_raise_refusal, _identity(config))
    return config


def transactional_producer_config(settings: Settings, transactional_id: str) -> dict[str, Any]:
    """A transactional producer whose id is stable across restarts of one service instance.

    retry.backoff.ms is low because a transaction begun right after a commit is refused with
    CONCURRENT_TRANSACTIONS until the markers are written; the default 100 ms back-off would add
    that much to every hop (see reference/components-measured.md, section 7).
    """
    config = producer_config(settings, transactional_id)
    config.update({
        "transactional.id": settings.topic(transactional_id),
        "transaction.timeout.ms": 30000,
        "retry.backoff.ms": 5,
        "retry.backoff.max.ms": 100,
    })
    return config


def consumer_config(settings: Settings, group: str | None, client_id: str) -> dict[str, Any]:
    """A consumer that sees only committed messages and never commits on its own."""
    config = base_config(settings)
    config.update({
        "client.id": client_id,
        # librdkafka looks up a coordinator even for a group-less reader: the deployment's prefix
        # keeps that group within the deployment's ACLs (secure.py grants DESCRIBE on it)
        "group.id": settings.group(group or f"{client_id}-nogroup"),
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # The broker answers a waiting fetch as soon as a commit makes data visible, so a long wait
        # costs no latency (measured: same p50 at 10, 100 and 500 ms); a short one costs the broker
        # up to 1000/wait empty fetches per second per consumer.
        "fetch.wait.max.ms": int(os.environ.get("AGENTLOG_FETCH_WAIT_MS", "500")),
        "partition.assignment.strategy": "range",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
    })
    return config


def poll_batch(consumer: Consumer, max_messages: int, timeout: float, linger: float = 0.0) -> list[Message]:
    """Wait for one message, then take what else arrives within `linger` seconds.

    `Consumer.consume(n, timeout)` waits until n messages or the timeout, which adds the whole
    timeout to every hop when traffic is light; this returns as soon as anything arrives. Callers
    pass a small `linger` only under load, where a few milliseconds buy much larger batches (and so
    fewer transactions, whose per-commit round trips dominate the cost).
    """
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(max_messages - 1, linger)]
