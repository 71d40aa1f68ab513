"""The secured local broker (`agentlog kafka start --secure`): TLS material, SCRAM users and ACLs.

Layout under ``var/kafka/secure`` (0700): ``ca.pem`` (the CA clients trust), ``ca-key.pem``,
``broker.pem`` (the broker's key and certificate, a PEM keystore) and ``clients/<principal>.properties``
(librdkafka settings with that principal's SCRAM password, 0600). The directory's existence marks the
broker as secured: a restart without ``--secure`` keeps it secured.

Listeners: clients use SASL_SSL with SCRAM-SHA-512; the controller listener is TLS with client
certificates (the broker's own, principal ``broker``). KRaft's StandardAuthorizer denies whatever
no ACL allows; ``admin`` (created when the data dir is formatted) and ``broker`` are super users.
Every other principal gets the ACLs of `acl_table`, derived from what each service reads and writes.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from agentlog.config import PROPERTIES_FILE_ENV, Settings, credentials_path, parse_properties
from agentlog.errors import BrokerError
from agentlog.kafka.client import base_config
from agentlog.kafka.topics import (
    ANSWER_STREAM,
    CONVERSATION_EVENTS,
    DEAD_LETTER_QUEUE,
    SCHEMA_REGISTRY,
    SYNTHESIS_REQUESTS,
    TOOL_INVOCATION_REQUESTS,
    TOPICS,
    USER_COMMANDS,
    ensure_topics,
)

if TYPE_CHECKING:  # cryptography is imported only when material is made: plain starts stay fast
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes as PrivateKey

ADMIN = "admin"
BROKER = "broker"
MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192
ALL_TOPICS = tuple(spec.name for spec in TOPICS)
_CERT_DAYS = 3650
NOGROUP_GROUPS = "agentlog-*"  # the client ids of agentlog's group-less readers (agentlog-watch, ...)


@dataclass(frozen=True)
class Role:
    """What one principal does with Kafka, in logical names (the topic prefix is applied later)."""

    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    describes: tuple[str, ...] = ()  # metadata and offsets only
    group: str | None = None  # the consumer group it commits in ("*" at the end: a prefix)
    transactional_id: str | None = None  # ("*" at the end: a prefix, for one id per instance)
    describes_groups: bool = False  # reads other groups' committed offsets (lag)
    describes_configs: bool = False


def _loop(*writes: str, group: str) -> Role:
    """A service of the transactional loop: reads what runtime.SERVICES says (added by `acl_table`),
    writes its outputs, dead-letters, and publishes its schemas."""
    return Role(reads=(SCHEMA_REGISTRY,), writes=(*writes, DEAD_LETTER_QUEUE, SCHEMA_REGISTRY),
                group=group, transactional_id=group if group.endswith("*") else f"{group}-*")


ROLES: dict[str, Role] = {
    "router": _loop(CONVERSATION_EVENTS, group="router"),
    "orchestrator": _loop(CONVERSATION_EVENTS, TOOL_INVOCATION_REQUESTS, group="orchestrator"),
    # tool pools run in their own groups and transactional ids: tool-worker.<tools>
    "tool-worker": _loop(CONVERSATION_EVENTS, ANSWER_STREAM, group="tool-worker*"),  # generalChat streams
    "aggregator": _loop(SYNTHESIS_REQUESTS, group="aggregator"),
    "synthesis": _loop(CONVERSATION_EVENTS, ANSWER_STREAM, group="synthesis"),
    "projection": Role(reads=(CONVERSATION_EVENTS, SCHEMA_REGISTRY)),
    "metrics": Role(reads=(CONVERSATION_EVENTS, SCHEMA_REGISTRY), describes=ALL_TOPICS, describes_groups=True),
    "gateway": Role(reads=(CONVERSATION_EVENTS, ANSWER_STREAM, SCHEMA_REGISTRY, DEAD_LETTER_QUEUE), writes=(USER_COMMANDS,),
                    describes=ALL_TOPICS),
    # the operator: reads everything, asks questions, publishes schemas, redrives dead letters
    "cli": Role(reads=ALL_TOPICS, writes=(USER_COMMANDS, CONVERSATION_EVENTS, TOOL_INVOCATION_REQUESTS,
                                          SYNTHESIS_REQUESTS, SCHEMA_REGISTRY),
                transactional_id="operator-redrive", describes_groups=True, describes_configs=True),
}
PRINCIPALS = tuple(ROLES)


@dataclass(frozen=True, order=True)
class Grant:
    """One ACL: `principal` may do `operation` on the resource (a physical name, or a prefix)."""

    principal: str
    resource: str  # "topic", "group" or "transactional-id"
    name: str
    prefixed: bool
    operation: str


def acl_table(prefix: str = "") -> list[Grant]:
    """Every ACL the secured broker needs for a deployment whose names start with `prefix`."""
    from agentlog.services.runtime import SERVICES  # heavy: only provisioning needs it

    grants: set[Grant] = set()
    for principal, role in ROLES.items():
        def add(resource: str, pattern: str, *operations: str, who: str = principal) -> None:
            name, prefixed = f"{prefix}{pattern.rstrip('*')}", pattern.endswith("*")
            grants.update(Grant(who, resource, name, prefixed, op) for op in operations)

        consumed = SERVICES[principal].topics if principal in SERVICES else ()
        for topic in (*role.reads, *consumed):
            add("topic", topic, "READ", "DESCRIBE")
        for topic in role.writes:
            add("topic", topic, "WRITE", "DESCRIBE")
        for topic in role.describes:
            add("topic", topic, "DESCRIBE")
        for topic in ALL_TOPICS if role.describes_configs else ():
            add("topic", topic, "DESCRIBE_CONFIGS")
        if role.group is not None:
            add("group", role.group, "READ", "DESCRIBE")
        if role.transactional_id is not None:
            add("transactional-id", role.transactional_id, "WRITE", "DESCRIBE")
        add("group", NOGROUP_GROUPS, "DESCRIBE")  # group-less readers (client.consumer_config)
        for other in ROLES.values() if role.describes_groups else ():
            if other.group is not None:
                add("group", other.group, "DESCRIBE")
    return sorted(grants)


_RESOURCE_TYPES = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
                   "transactional-id": ResourceType.TRANSACTIONAL_ID}


def _binding(grant: Grant) -> AclBinding:
    pattern = ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL
    return AclBinding(_RESOURCE_TYPES[grant.resource], grant.name, pattern, f"User:{grant.principal}", "*",
                      AclOperation[grant.operation], AclPermissionType.ALLOW)


# ---- files ------------------------------------------------------------------------------------------
def secure_dir(kafka_dir: Path) -> Path:
    return Path(kafka_dir) / "secure"


def is_secured(kafka_dir: Path) -> bool:
    """True once `start --secure` made the material: the broker then always starts secured."""
    return (secure_dir(kafka_dir) / "broker.pem").is_file()


def write_private(path: Path, data: bytes) -> None:
    """Created 0600: never readable by others, not even for a moment."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _certificate(subject: str, key: PrivateKey, issuer: x509.Certificate | None,
                 issuer_key: PrivateKey | None) -> x509.Certificate:
    """The CA (no issuer) or a certificate it signs, valid for 127.0.0.1 and localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=_CERT_DAYS)))
    if issuer is None or issuer_key is None:
        builder = (builder.issuer_name(name).add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True))
        return builder.sign(key, hashes.SHA256())
    builder = (builder.issuer_name(issuer.subject)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                           x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                              critical=False)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                              critical=False))
    return builder.sign(issuer_key, hashes.SHA256())


def _pem_key(key: PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def client_properties(principal: str, password: str, ca: Path) -> str:
    """A principal's librdkafka settings for the local secured broker (AGENTLOG_KAFKA_PROPERTIES_FILE)."""
    return (f"# agentlog principal {principal} on the local secured broker\nsecurity.protocol=SASL_SSL\n"
            f"sasl.mechanism={MECHANISM}\nsasl.username={principal}\nsasl.password={password}\n"
            f"ssl.ca.location={ca}\n")


def ensure_material(kafka_dir: Path) -> None:
    """Generate the CA, the broker's certificate and every principal's password and certificate, once."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    directory = secure_dir(kafka_dir)
    if is_secured(kafka_dir):
        return
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = _certificate("agentlog-local-ca", ca_key, None, None)
    broker_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    broker = _certificate(BROKER, broker_key, ca, ca_key)
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    write_private(directory / "ca-key.pem", _pem_key(ca_key))
    write_private(directory / "ca.pem", ca_pem)
    for principal in (ADMIN, *PRINCIPALS):
        write_private(credentials_path(kafka_dir, principal),
                       client_properties(principal, secrets.token_urlsafe(24), directory / "ca.pem").encode())
        key = ec.generate_private_key(ec.SECP256R1())  # for mutual TLS; EC keys are quick to make
        certificate = _certificate(principal, key, ca, ca_key).public_bytes(serialization.Encoding.PEM)
        write_private(directory / "clients" / f"{principal}.pem", certificate)
        write_private(directory / "clients" / f"{principal}-key.pem", _pem_key(key))
    # written last: its presence is what `is_secured` checks
    write_private(directory / "broker.pem", _pem_key(broker_key) + broker.public_bytes(serialization.Encoding.PEM)
                   + ca_pem)


def credentials(kafka_dir: Path, principal: str) -> dict[str, str]:
    """A principal's librdkafka settings from its properties file."""
    return parse_properties(credentials_path(kafka_dir, principal).read_text())


def admin_config(kafka_dir: Path) -> dict[str, str]:
    """The super user's client settings, or nothing for a plain broker."""
    return credentials(kafka_dir, ADMIN) if is_secured(kafka_dir) else {}


def mtls_credentials_path(kafka_dir: Path, principal: str) -> Path:
    """A principal's librdkafka settings for the mutual-TLS listener (its own bootstrap.servers)."""
    return credentials_path(kafka_dir, f"{principal}-mtls")


def _mtls_listener_port(kafka_dir: Path) -> int:
    """The mutual-TLS listener's port: the recorded one while it is free, and the mTLS properties
    files (which carry it) rewritten to match."""
    from agentlog.kafka.broker import _free_port, _port_free

    directory = secure_dir(kafka_dir)
    recorded = directory / "mtls-port"
    port = int(recorded.read_text()) if recorded.is_file() else 0
    if not port or not _port_free(port):
        port = _free_port()
        recorded.write_text(f"{port}\n")
    for principal in (ADMIN, *PRINCIPALS):
        clients = directory / "clients"
        write_private(mtls_credentials_path(kafka_dir, principal), (
            f"# agentlog principal {principal} on the local secured broker, by certificate\n"
            f"bootstrap.servers=127.0.0.1:{port}\nsecurity.protocol=SSL\nssl.ca.location={directory / 'ca.pem'}\n"
            f"ssl.certificate.location={clients / f'{principal}.pem'}\n"
            f"ssl.key.location={clients / f'{principal}-key.pem'}\n").encode())
    return port


# ---- broker -----------------------------------------------------------------------------------------
def server_properties(kafka_dir: Path, port: int, controller_port: int) -> dict[str, str]:
    """The broker settings that replace the PLAINTEXT listener (merged over the plain ones): SASL_SSL
    on `port`, mutual TLS on a port of its own (see `_mtls_listener_port`)."""
    directory = secure_dir(kafka_dir)
    mtls = _mtls_listener_port(kafka_dir)
    admin_password = credentials(kafka_dir, ADMIN)["sasl.password"]
    jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{ADMIN}" '
            f'password="{admin_password}";')
    return {
        "listeners": f"SASL_SSL://127.0.0.1:{port},MTLS://127.0.0.1:{mtls},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"SASL_SSL://127.0.0.1:{port},MTLS://127.0.0.1:{mtls}",
        "inter.broker.listener.name": "SASL_SSL",
        "listener.security.protocol.map": "CONTROLLER:SSL,SASL_SSL:SASL_SSL,MTLS:SSL",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": jaas,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(directory / "broker.pem"),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(directory / "ca.pem"),
        "listener.name.controller.ssl.client.auth": "required",
        "listener.name.mtls.ssl.client.auth": "required",
        "ssl.principal.mapping.rules": "RULE:^CN=([a-zA-Z0-9._-]+)$/$1/,DEFAULT",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN};User:{BROKER}",
    }


def format_args(kafka_dir: Path) -> list[str]:
    """StorageTool arguments creating the super user, which everything else is provisioned through."""
    if not is_secured(kafka_dir):
        return []
    password = credentials(kafka_dir, ADMIN)["sasl.password"]
    return ["--add-scram", f"{MECHANISM}=[name={ADMIN},password={password}]"]


def create_users(kafka_dir: Path, bootstrap: str, timeout: float = 30.0) -> None:
    """Create (or reset to the files' passwords) every service principal's SCRAM credential."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **admin_config(kafka_dir)})
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(p, info, credentials(kafka_dir, p)["sasl.password"].encode()) for p in PRINCIPALS]
    _wait_all(admin.alter_user_scram_credentials(upserts, request_timeout=timeout).values(), "creating SCRAM users")
    # the write is acknowledged before the broker's metadata holds it: wait until it authenticates
    _wait_until(lambda: _users_known(admin), "the SCRAM users", timeout)


def _users_known(admin: AdminClient) -> bool:
    futures = admin.describe_user_scram_credentials(list(PRINCIPALS))
    assert isinstance(futures, dict)  # one future per user when users are named
    return all(future.exception() is None for future in futures.values())


def provision(settings: Settings, kafka_dir: Path | None = None, timeout: float = 30.0) -> int:
    """As the super user of the secured broker in `kafka_dir` (default: the settings' own): create the
    deployment's topics and ACLs (idempotent); returns the number of ACLs."""
    admin_settings = dataclasses.replace(settings, extra_kafka_config=admin_config(kafka_dir or settings.kafka_dir))
    ensure_topics(admin_settings, timeout)
    admin = AdminClient(base_config(admin_settings))
    bindings = [_binding(g) for g in acl_table(settings.topic_prefix)]
    _wait_all(admin.create_acls(bindings, request_timeout=timeout).values(), "creating ACLs")
    anything: Any = None  # the stubs want str, the filter wants None for "any name, principal, host"
    everything = AclBindingFilter(ResourceType.ANY, anything, ResourcePatternType.ANY, anything, anything,
                                  AclOperation.ANY, AclPermissionType.ANY)
    _wait_until(lambda: set(bindings) <= set(admin.describe_acls(everything).result()), "the ACLs", timeout)
    return len(bindings)


def _wait_until(done: Callable[[], bool], what: str, timeout: float) -> None:
    """Poll `done` until true; the broker applies metadata (users, ACLs) a moment after the controller."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise BrokerError(f"the secured broker did not apply {what} within {timeout} s")
        time.sleep(0.05)


def _wait_all(futures: Iterable[Future[Any]], what: str) -> None:
    for future in futures:
        try:
            future.result()
        except Exception as error:
            raise BrokerError(f"{what} on the secured broker failed: {error}") from error


def service_env(settings: Settings, name: str, env: Mapping[str, str]) -> dict[str, str]:
    """The environment of a supervised process: its own principal's credentials on the local
    secured broker (the supervisor's own, `cli`, would be refused most of what a service does)."""
    child = dict(env)
    path = credentials_path(settings.kafka_dir, name)
    if not settings.external_cluster and is_secured(settings.kafka_dir) and path.is_file():
        child[PROPERTIES_FILE_ENV] = str(path)
    return child
