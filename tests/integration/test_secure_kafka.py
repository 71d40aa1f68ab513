"""The core flow on a secured broker (SASL_SSL, SCRAM users per service, ACLs), and the two refusals
that show the security is real: a wrong password, and a principal writing a topic it does not own.

The module starts its own secured broker (the session broker is plain), so this runs in CI as is."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from agentlog.config import Settings, credentials_path
from agentlog.kafka.broker import LocalBroker
from agentlog.kafka.client import KafkaAccessError, producer_config
from agentlog.kafka.secure import (
    ADMIN,
    PRINCIPALS,
    credentials,
    ensure_material,
    mtls_credentials_path,
    provision,
    secure_dir,
)
from agentlog.kafka.topics import CONVERSATION_EVENTS, USER_COMMANDS
from agentlog.supervisor import spawn_service
from helpers import ALL_SERVICES, Stack, wait_for

REPO = Path(__file__).resolve().parents[2]
WRONG_PASSWORD = {"AGENTLOG_KAFKA_SASL_PASSWORD": "not-the-password"}


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    broker = LocalBroker(tmp_path_factory.mktemp("secure-kafka"), lib_dir=REPO / "var" / "kafka" / "lib")
    broker.start(secure=True, timeout=180)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def secure_env(secure_broker: LocalBroker, tmp_path: Path) -> dict[str, str]:
    """The test's own topics and ACLs on the secured broker; clients act as the `cli` principal."""
    bootstrap = secure_broker.running_bootstrap()
    assert bootstrap is not None
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AGENTLOG_KAFKA_", "AGENTLOG_RDKAFKA_"))}
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "AGENTLOG_TOPIC_PREFIX": f"s{uuid.uuid4().hex[:10]}.",
        "AGENTLOG_VAR_DIR": str(tmp_path / "var"),
        "AGENTLOG_KAFKA_PROPERTIES_FILE": str(credentials_path(secure_broker.kafka_dir, "cli")),
        "AGENTLOG_LOG_LEVEL": "INFO",
    })
    provision(Settings.from_env(env), secure_broker.kafka_dir)
    return env


def as_principal(env: dict[str, str], broker: LocalBroker, principal: str, **extra: str) -> dict[str, str]:
    return {**env, "AGENTLOG_KAFKA_PROPERTIES_FILE": str(credentials_path(broker.kafka_dir, principal)), **extra}


def test_core_flow_on_the_secured_broker(secure_env: dict[str, str], secure_broker: LocalBroker) -> None:
    with Stack(secure_env) as stack:
        for name in ALL_SERVICES:  # each service as its own principal, as the supervisor runs them
            stack.start(name, extra_env=as_principal(secure_env, secure_broker, name))
        _, events = stack.ask("What is 2+3 and what is 10*4?", f"conv-{uuid.uuid4().hex[:8]}", timeout=120)
        answer = [e for e in events if e.type == "FinalAnswerSynthesized"]
        assert answer and "5" in answer[0].payload["message"] and "40" in answer[0].payload["message"]
        logs = "".join(stack.log(name) for name in ALL_SERVICES)
    assert "PLAINTEXT://" not in secure_broker.config_path.read_text()
    logs += "".join(path.read_text(errors="replace") for path in secure_broker.logs_dir.iterdir())
    for principal in (ADMIN, *PRINCIPALS):  # passwords reach neither the services' nor the broker's logs
        assert credentials(secure_broker.kafka_dir, principal)["sasl.password"] not in logs


def test_a_wrong_password_is_refused_naming_authentication(secure_env: dict[str, str],
                                                           secure_broker: LocalBroker) -> None:
    wrong = {**secure_env, **WRONG_PASSWORD}
    with pytest.raises(KafkaAccessError, match="refused authentication of user 'cli'"):
        producer_config(Settings.from_env(wrong), "test")
    done = subprocess.run([sys.executable, "-m", "agentlog", "ask", "What is 2+3?", "--timeout", "10"], env=wrong,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "refused authentication of user 'cli'" in " ".join(done.stdout.split())
    # a service with a wrong password stops at once with the same cause in its log
    log = Path(secure_env["AGENTLOG_VAR_DIR"]) / "router.log"
    router = spawn_service("router", log, as_principal(secure_env, secure_broker, "router", **WRONG_PASSWORD))
    try:
        assert router.wait(120) != 0
    finally:
        router.kill()
    assert "refused authentication of user 'router'" in log.read_text()


def assert_writes_only_its_own_topic(env: dict[str, str], who: str) -> None:
    """The synthesis principal writes answers; asking questions on user-commands is refused."""
    settings = Settings.from_env(env)
    producer = Producer(producer_config(settings, "synthesis-test"))
    producer.produce(settings.topic(CONVERSATION_EVENTS), b"allowed: synthesis writes answers here")
    assert producer.flush(30) == 0  # its own output topic is writable...
    producer.produce(settings.topic(USER_COMMANDS), b"not allowed: only users and the gateway ask questions")
    with pytest.raises(KafkaAccessError, match=f"refused authorization: {who}"):
        producer.flush(30)  # ...a topic it does not own is not
    producer.purge()
    producer.close()  # not left retrying against a broker this module stops


def test_a_service_writing_a_topic_it_does_not_own_is_refused_naming_authorization(
        secure_env: dict[str, str], secure_broker: LocalBroker) -> None:
    assert_writes_only_its_own_topic(as_principal(secure_env, secure_broker, "synthesis"), "user 'synthesis'")
    # a service process under another service's identity is refused too (its group, id and topics)
    log = Path(secure_env["AGENTLOG_VAR_DIR"]) / "router-as-synthesis.log"
    impostor = spawn_service("router", log, as_principal(secure_env, secure_broker, "synthesis"))
    try:
        wait_for(lambda: "authorization failed" in log.read_text(errors="replace").lower() if log.exists() else False,
                 timeout=120, what="the router running as synthesis to be refused")
    finally:
        impostor.kill()
        impostor.wait(10)



def test_mutual_tls_identifies_a_service_by_its_certificate(secure_env: dict[str, str], secure_broker: LocalBroker,
                                                           tmp_path: Path) -> None:
    mtls = {**secure_env, "AGENTLOG_KAFKA_PROPERTIES_FILE": str(mtls_credentials_path(secure_broker.kafka_dir,
                                                                                      "synthesis"))}
    assert Settings.from_env(mtls).extra_kafka_config["security.protocol"] == "SSL"
    assert_writes_only_its_own_topic(mtls, "the certificate .*synthesis.pem")
    ensure_material(tmp_path / "rogue")  # the same names, signed by another CA
    rogue = secure_dir(tmp_path / "rogue") / "clients"
    forged = {**mtls, "AGENTLOG_KAFKA_SSL_CERTIFICATE_LOCATION": str(rogue / "synthesis.pem"),
              "AGENTLOG_KAFKA_SSL_KEY_LOCATION": str(rogue / "synthesis-key.pem")}
    with pytest.raises(KafkaAccessError, match="refused TLS handshake"):
        producer_config(Settings.from_env(forged), "forged")
