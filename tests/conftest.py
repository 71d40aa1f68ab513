"""One real Kafka broker per test session (KRaft, from the project's Maven jars), unless
KAFKA_BOOTSTRAP_SERVERS points the suite at an existing cluster. Each test gets its own topic
prefix and var/ directory, so tests never see each other's messages or state."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentlog.kafka.broker import LocalBroker
from helpers import Stack, isolated_env

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker | None]:
    """The session's own broker; None when the suite runs against KAFKA_BOOTSTRAP_SERVERS."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield None
        return
    broker = LocalBroker(tmp_path_factory.mktemp("kafka"), lib_dir=REPO / "var" / "kafka" / "lib")
    broker.start(timeout=120)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: LocalBroker | None) -> str:
    if kafka_broker is None:
        return os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    bootstrap = kafka_broker.running_bootstrap()
    assert bootstrap is not None
    return bootstrap


@pytest.fixture
def agentlog_env(kafka_bootstrap: str, tmp_path: Path) -> dict[str, str]:
    """Environment for this test's services and clients: own topics (prefix), own var/ dir."""
    return isolated_env(dict(os.environ), kafka_bootstrap, tmp_path)


@pytest.fixture
def stack(agentlog_env: dict[str, str]) -> Iterator[Stack]:
    """All the services running as OS processes, on this test's environment; stopped afterwards."""
    with Stack(agentlog_env) as stack:
        stack.start()
        yield stack
