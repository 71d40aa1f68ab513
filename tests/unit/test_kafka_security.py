"""The secured broker's ACL table, the client security settings and the generated TLS material."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from confluent_kafka import KafkaError
from cryptography import x509

from agentlog.config import Settings, credentials_path, parse_properties, security_config
from agentlog.errors import ConfigurationError
from agentlog.kafka.client import refusal
from agentlog.kafka.secure import (
    ADMIN,
    PRINCIPALS,
    Grant,
    acl_table,
    client_properties,
    ensure_material,
    format_args,
    is_secured,
    mtls_credentials_path,
    secure_dir,
    server_properties,
    service_env,
)
from agentlog.kafka.topics import TOPICS
from agentlog.services.runtime import SERVICES

P = "dep."


def allowed(grants: list[Grant], principal: str, resource: str, name: str, operation: str) -> bool:
    """What Kafka's authorizer decides for one request, from the table (literal or prefix match)."""
    return any(g.principal == principal and g.resource == resource and g.operation == operation
               and (name.startswith(g.name) if g.prefixed else name == g.name) for g in grants)


def test_each_loop_service_may_read_its_topics_join_its_group_and_use_its_transactional_ids() -> None:
    grants = acl_table(P)
    for name, spec in SERVICES.items():
        for topic in spec.topics:
            assert allowed(grants, name, "topic", P + topic, "READ"), (name, topic)
        if spec.build is not None:
            assert allowed(grants, name, "group", P + name, "READ")
            assert allowed(grants, name, "transactional-id", f"{P}{name}-3", "WRITE")
            assert allowed(grants, name, "topic", P + "dead-letter-queue", "WRITE")
    assert allowed(grants, "tool-worker", "group", P + "tool-worker.getWeather", "READ")  # a tool pool


def test_writes_are_limited_to_what_each_service_produces() -> None:
    grants = acl_table(P)
    writers = {topic: sorted({g.principal for g in grants if g.name == P + topic and g.operation == "WRITE"})
               for topic in ("user-commands", "tool-invocation-requests", "synthesis-requests")}
    assert writers == {"user-commands": ["cli", "gateway"], "tool-invocation-requests": ["cli", "orchestrator"],
                       "synthesis-requests": ["aggregator", "cli"]}
    assert not allowed(grants, "synthesis", "topic", P + "user-commands", "WRITE")
    assert not allowed(grants, "router", "group", P + "orchestrator", "READ")
    assert not allowed(grants, "router", "transactional-id", P + "orchestrator-0", "WRITE")
    assert not allowed(grants, "gateway", "topic", P + "conversation-events", "WRITE")
    assert not allowed(grants, "projection", "topic", P + "dead-letter-queue", "READ")


def test_nothing_reaches_outside_the_deployment_prefix_or_grants_administration() -> None:
    grants = acl_table(P)
    assert all(g.name.startswith(P) for g in grants)
    assert {g.operation for g in grants} <= {"READ", "WRITE", "DESCRIBE", "DESCRIBE_CONFIGS"}
    assert {g.principal for g in grants} == set(PRINCIPALS) and ADMIN not in PRINCIPALS
    # a group-less reader (agentlog-watch-nogroup, ...) can find its coordinator
    assert allowed(grants, "gateway", "group", P + "agentlog-watch-nogroup", "DESCRIBE")


def test_every_topic_is_readable_by_the_operator() -> None:
    grants = acl_table("")
    assert all(allowed(grants, "cli", "topic", spec.name, "READ") for spec in TOPICS)


def test_security_env_maps_to_librdkafka_and_overrides_the_properties_file(tmp_path: Path) -> None:
    props = tmp_path / "client.properties"
    props.write_text("# mine\nsecurity.protocol=SASL_SSL\nsasl.mechanism=PLAIN\nsasl.username=a\nsasl.password=x=y\n")
    config = security_config({"AGENTLOG_KAFKA_PROPERTIES_FILE": str(props), "AGENTLOG_KAFKA_SASL_USERNAME": "b"})
    assert config == {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "sasl.username": "b",
                      "sasl.password": "x=y"}
    mtls = security_config({"AGENTLOG_KAFKA_SECURITY_PROTOCOL": "SSL", "AGENTLOG_KAFKA_SSL_CA_LOCATION": "/ca",
                            "AGENTLOG_KAFKA_SSL_CERTIFICATE_LOCATION": "/c", "AGENTLOG_KAFKA_SSL_KEY_LOCATION": "/k"})
    assert mtls["ssl.certificate.location"] == "/c" and mtls["ssl.key.location"] == "/k"


@pytest.mark.parametrize(("env", "message"), [
    ({"AGENTLOG_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "AGENTLOG_KAFKA_SASL_USERNAME": "a",
      "AGENTLOG_KAFKA_SASL_PASSWORD": "b"}, "AGENTLOG_KAFKA_SASL_MECHANISM"),
    ({"AGENTLOG_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "AGENTLOG_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
     "AGENTLOG_KAFKA_SASL_PASSWORD"),
    ({"AGENTLOG_KAFKA_SECURITY_PROTOCOL": "TLS"}, "security.protocol"),
    ({"AGENTLOG_KAFKA_SSL_CERTIFICATE_LOCATION": "/c.pem"}, "AGENTLOG_KAFKA_SSL_KEY_LOCATION"),
    ({"AGENTLOG_KAFKA_PROPERTIES_FILE": "/nonexistent/client.properties"}, "cannot read"),
])
def test_unusable_security_settings_fail_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        security_config(env)


def test_the_local_secured_broker_gives_the_cli_its_credentials_and_each_service_its_own(tmp_path: Path) -> None:
    env = {"AGENTLOG_VAR_DIR": str(tmp_path / "var")}
    assert Settings.from_env(env).extra_kafka_config == {}  # plain: nothing changes
    kafka_dir = tmp_path / "var" / "kafka"
    ensure_material(kafka_dir)
    settings = Settings.from_env(env)
    assert settings.extra_kafka_config["sasl.username"] == "cli"
    assert settings.extra_kafka_config["sasl.password"] not in repr(settings)
    child = service_env(settings, "router", {"PATH": "/bin"})
    assert child["AGENTLOG_KAFKA_PROPERTIES_FILE"] == str(credentials_path(kafka_dir, "router"))
    external = Settings.from_env({**env, "KAFKA_BOOTSTRAP_SERVERS": "kafka:9093"})
    assert external.extra_kafka_config == {}
    assert "AGENTLOG_KAFKA_PROPERTIES_FILE" not in service_env(external, "router", {})


def test_material_is_private_signed_by_the_ca_and_made_once(tmp_path: Path) -> None:
    assert not is_secured(tmp_path) and format_args(tmp_path) == []
    ensure_material(tmp_path)
    directory = secure_dir(tmp_path)
    for path in [directory / "broker.pem", directory / "ca-key.pem", *(directory / "clients").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    ca = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    broker = x509.load_pem_x509_certificates((directory / "broker.pem").read_bytes())[0]
    broker.verify_directly_issued_by(ca)  # raises unless the CA signed it
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in [str(ip) for ip in names.get_values_for_type(x509.IPAddress)]
    passwords = {p: parse_properties(credentials_path(tmp_path, p).read_text())["sasl.password"] for p in PRINCIPALS}
    assert len(set(passwords.values())) == len(PRINCIPALS)
    ensure_material(tmp_path)
    assert x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes()) == ca
    assert format_args(tmp_path)[0] == "--add-scram"


def test_server_properties_leave_no_plaintext_listener_and_deny_by_default(tmp_path: Path) -> None:
    ensure_material(tmp_path)
    props = server_properties(tmp_path, 9093, 9094)
    assert "PLAINTEXT" not in props["listener.security.protocol.map"].replace("SASL_", "")
    assert props["listener.name.mtls.ssl.client.auth"] == "required"  # no certificate, no connection
    mtls = parse_properties(mtls_credentials_path(tmp_path, "router").read_text())
    assert f"MTLS://{mtls['bootstrap.servers']}" in props["listeners"] and mtls["security.protocol"] == "SSL"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert "allow.everyone.if.no.acl.found" not in props  # default false: no ACL, no access
    assert props["super.users"] == "User:admin;User:broker"


def test_client_properties_are_what_librdkafka_needs(tmp_path: Path) -> None:
    props = parse_properties(client_properties("router", "pw", tmp_path / "ca.pem"))
    assert props == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "router",
                     "sasl.password": "pw", "ssl.ca.location": str(tmp_path / "ca.pem")}


def test_refusals_name_their_cause_and_transient_errors_pass() -> None:
    auth = refusal(KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error"), "user 'cli'")
    assert auth is not None and "refused authentication of user 'cli'" in str(auth)
    denied = refusal(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), "user 'synthesis'")
    assert denied is not None and "refused authorization: user 'synthesis'" in str(denied)
    assert refusal(KafkaError(KafkaError._TRANSPORT), "user 'cli'") is None
    rejected = KafkaError(KafkaError._TRANSPORT, "Receive failed: SSL routines::ssl/tls alert certificate unknown")
    assert "refused TLS handshake of the certificate c.pem" in str(refusal(rejected, "the certificate c.pem"))
    assert refusal(KafkaError(KafkaError._ALL_BROKERS_DOWN), "user 'cli'") is None
    # after the start-up probe, a TLS alert may be a broker restarting: it passes, in either form
    assert refusal(rejected, "the certificate c.pem", mid_run=True) is None
    assert refusal(KafkaError(KafkaError._SSL, "handshake failed"), "user 'cli'", mid_run=True) is None
    assert refusal(KafkaError(KafkaError._AUTHENTICATION, "SASL"), "user 'cli'", mid_run=True) is not None
