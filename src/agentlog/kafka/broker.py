"""A single-node Kafka 4.1.1 (KRaft, combined broker+controller) run as a plain Java process.

No Docker and no Kafka tarball: the jars come from Maven Central via the packaged pom.xml, so
the only host requirements are Java 17 and mvn. All state lives under one directory
(``<project>/var/kafka``): jars, config, data, logs and ``broker.json`` recording the pid and
ports, so any process (CLI, services, tests) can find, check or stop the broker.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from agentlog.errors import BrokerError
from agentlog.kafka.secure import (
    admin_config,
    create_users,
    ensure_material,
    format_args,
    is_secured,
    server_properties,
    write_private,
)

KAFKA_VERSION = "4.1.1"
LIB_DIR_ENV = "AGENTLOG_KAFKA_LIB_DIR"
_MARKER = ".pom-sha256"
# Jars that prove a lib dir was filled from our pom (used for shared dirs made without a marker).
_REQUIRED_JARS = (f"kafka_2.13-{KAFKA_VERSION}.jar", "log4j-slf4j-impl-2.24.3.jar")
# Memory budget of one broker JVM (and of each cluster node): <= 300 MB PSS under load
# (BENCHMARK.md, "Broker memory"). Serial GC ends up touching every page of the heap (garbage is
# promoted until a full GC), so a long-running broker's PSS is Xmx + ~100 MB of native memory
# (metaspace ~45, code cache ~15, symbols, thread stacks, libjvm): 256 MB gave 370 MB. The live
# heap under `agentlog bench` load is 30-65 MB (+16 KB per partition), so 160 MB leaves room.
HEAP_MB = 160
JVM_OPTS = (f"-Xms{HEAP_MB}m", f"-Xmx{HEAP_MB}m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-XX:ReservedCodeCacheSize=48m")
# glibc gives each of the ~90 JVM threads an arena of its own otherwise: ~7 MB of PSS saved.
JVM_ENV = {"MALLOC_ARENA_MAX": "2"}
MEMORY_PROPERTIES = {
    # The default 128 MB dedupe buffer (on the heap) is most of an idle broker's memory.
    "log.cleaner.dedupe.buffer.size": "4194304",
    # Thread pools sized for a 2-core laptop, not a server: defaults 8 / 3 / 10 (the io and network
    # pools exist for the broker and for the controller, the network one per listener).
    "num.io.threads": "4",
    "num.network.threads": "2",
    "background.threads": "4",
    # 50 partitions each by default. Only a fresh data dir gets these: an existing one keeps its
    # topics, and the coordinators map ids over the topic's real partition count.
    "offsets.topic.num.partitions": "6",
    "transaction.state.log.num.partitions": "6",
}
_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir:-.}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
shutdownHook = disable
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.req.name = kafka.request.logger
logger.req.level = WARN
"""


@dataclass(frozen=True)
class BrokerStatus:
    """What `agentlog kafka status` shows; ``reachable`` is the only field that costs a network call."""

    running: bool
    pid: int | None
    bootstrap: str | None
    data_dir: Path
    version: str
    reachable: bool


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def new_cluster_id() -> str:
    """A random KRaft cluster id; never starting with '-', which the storage tool would take for an option
    (Kafka's own Uuid.randomUuid avoids it for the same reason)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def java_command(lib: Path, config_dir: Path, logs_dir: Path) -> list[str]:
    """`java` with the memory budget's options and the log4j config in `config_dir`, before the main class."""
    return ["java", *JVM_OPTS, f"-Dlog4j2.configurationFile={config_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={logs_dir}", "-cp", f"{lib}/*"]


def jvm_env() -> dict[str, str]:
    """This process's environment plus the broker JVM's allocator settings."""
    return {**os.environ, **JVM_ENV}


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"({path} not readable)"
    return f"--- {path} ---\n" + "\n".join(text[-lines:])


def _metadata_ok(bootstrap: str, timeout: float, config: dict[str, str] | None = None) -> bool:
    """True if a broker answers a metadata request and lists itself (it is registered and unfenced)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 2, **(config or {})})
    try:
        return bool(admin.list_topics(timeout=max(timeout, 0.1)).brokers)
    except KafkaException:
        return False


def read_state_file(path: Path) -> dict[str, Any]:
    """A broker's or cluster's recorded pids and ports; empty when missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_state_file(path: Path, state: dict[str, Any]) -> None:
    """Written by rename, so a reader never sees half a file."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)


def is_kafka_process(pid: object, config_path: Path) -> bool:
    """The pid is a live (not zombie) JVM running kafka.Kafka with this server.properties.

    Pids get reused after a reboot or crash, so the recorded pid alone proves nothing.
    """
    if not isinstance(pid, int):
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return "kafka.Kafka" in cmdline and str(config_path) in cmdline


def wait_process_gone(pid: int, child: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    """Wait for a broker JVM to exit. Our own child is reaped (all its threads and sockets gone);
    another's is waited on until it is a zombie or gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and child.pid == pid:
            if child.poll() is not None:
                return True
        else:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # another LocalBroker in this process started it
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    return True
            except psutil.NoSuchProcess:
                return True
        time.sleep(0.05)
    return False


class LocalBroker:
    """Fetches, starts, checks and stops the broker living in ``kafka_dir``.

    Every method re-reads ``broker.json``, so separate instances and processes agree; start and
    stop hold a file lock so two `agentlog kafka start` calls cannot launch two brokers.
    """

    def __init__(self, kafka_dir: Path, *, lib_dir: Path | None = None) -> None:
        self.kafka_dir = Path(kafka_dir).resolve()
        env_lib = os.environ.get(LIB_DIR_ENV)
        self._shared_lib = lib_dir is not None or bool(env_lib)
        self.lib_dir = Path(lib_dir or env_lib or self.kafka_dir / "lib").resolve()
        self.data_dir = self.kafka_dir / "data"
        self.logs_dir = self.kafka_dir / "logs"
        self.config_path = self.kafka_dir / "server.properties"
        self.state_path = self.kafka_dir / "broker.json"
        self._proc: subprocess.Popen[bytes] | None = None

    # ---- jars -------------------------------------------------------------------------------
    def ensure_jars(self) -> Path:
        """Fill the lib dir from the packaged pom unless its marker says it already matches."""
        pom = resources.files("agentlog.kafka").joinpath("pom.xml").read_bytes()
        digest = hashlib.sha256(pom).hexdigest()
        marker = self.lib_dir / _MARKER
        if marker.is_file() and marker.read_text().strip() == digest:
            return self.lib_dir
        if self._shared_lib and all((self.lib_dir / j).is_file() for j in _REQUIRED_JARS):
            return self.lib_dir  # a shared cache filled by hand from the same pom
        if shutil.which("mvn") is None:
            raise BrokerError("mvn not found on PATH: it is needed once to fetch the Kafka jars")
        self.kafka_dir.mkdir(parents=True, exist_ok=True)
        (self.kafka_dir / "pom.xml").write_bytes(pom)
        if self.lib_dir.is_dir():  # stale jars of another version would poison the classpath
            for jar in self.lib_dir.glob("*.jar"):
                jar.unlink()
        cmd = ["mvn", "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={self.lib_dir}"]
        try:
            done = subprocess.run(cmd, cwd=self.kafka_dir, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired as exc:
            raise BrokerError("mvn did not finish fetching the Kafka jars within 900 s") from exc
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
            raise BrokerError(f"mvn failed (exit {done.returncode}) fetching the Kafka jars:\n{tail}")
        marker.write_text(digest + "\n")
        return self.lib_dir

    # ---- state --------------------------------------------------------------------------------
    def _read_state(self) -> dict[str, Any]:
        return read_state_file(self.state_path)

    def _write_state(self, state: dict[str, Any]) -> None:
        write_state_file(self.state_path, state)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.kafka_dir.mkdir(parents=True, exist_ok=True)
        with open(self.kafka_dir / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def _is_ours(self, pid: int) -> bool:
        return is_kafka_process(pid, self.config_path)

    def _live_pid(self) -> int | None:
        pid = self._read_state().get("pid")
        return pid if isinstance(pid, int) and self._is_ours(pid) else None

    def running_bootstrap(self) -> str | None:
        """The bootstrap address if the recorded broker process is alive; no network call."""
        state = self._read_state()
        pid = state.get("pid")
        if isinstance(pid, int) and self._is_ours(pid):
            return str(state["bootstrap"])
        return None

    def status(self) -> BrokerStatus:
        state = self._read_state()
        pid = self._live_pid()
        bootstrap = str(state["bootstrap"]) if pid is not None else None
        reachable = (bootstrap is not None and _accepting(int(state["port"]))
                     and _metadata_ok(bootstrap, 3, admin_config(self.kafka_dir)))
        return BrokerStatus(pid is not None, pid, bootstrap, self.data_dir, KAFKA_VERSION, reachable)

    # ---- start --------------------------------------------------------------------------------
    def start(self, port: int | None = None, controller_port: int | None = None, timeout: float = 60,
              secure: bool = False) -> str:
        """Start the broker (or return the running one's bootstrap) and wait until it serves metadata.

        Ports recorded in broker.json are reused: the static quorum names the controller's
        address, so a data dir keeps its ports once chosen. `secure` makes the broker SASL_SSL with
        ACLs for good (kafka/secure.py); a plain data dir must be reset first, as its data has no ACLs.
        """
        with self._locked():
            running = self.running_bootstrap()
            if running is not None:
                return running
            lib = self.ensure_jars()
            if secure and not is_secured(self.kafka_dir):
                if (self.data_dir / "meta.properties").exists():
                    raise BrokerError(f"{self.data_dir} was formatted without security: "
                                      "`agentlog kafka reset --yes` first, then start --secure")
                ensure_material(self.kafka_dir)
            state = self._read_state()
            port = port or state.get("port") or _free_port()
            controller_port = controller_port or state.get("controller_port") or _free_port()
            while controller_port == port:
                controller_port = _free_port()
            for p in (port, controller_port):  # a just-killed broker may still hold them briefly
                free_by = time.monotonic() + 10
                while not _port_free(p):
                    if time.monotonic() > free_by:
                        raise BrokerError(f"port {p} (kept for {self.data_dir}) is in use by another process")
                    time.sleep(0.1)
            bootstrap = f"127.0.0.1:{port}"
            self._write_config(port, controller_port)
            # StorageTool logs through log4j too: without the config it prints SLF4J NOP warnings.
            java = java_command(lib, self.kafka_dir, self.logs_dir)
            self._format(java)
            with open(self.logs_dir / "broker.out", "wb") as out:
                self._proc = subprocess.Popen(
                    [*java, "kafka.Kafka", str(self.config_path)],
                    cwd=self.kafka_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=jvm_env(),
                )
            started = {"pid": self._proc.pid, "port": port, "controller_port": controller_port}
            self._write_state({**started, "bootstrap": bootstrap, "started_at": time.time()})
            self._wait_ready(self._proc, port, bootstrap, timeout)
            if is_secured(self.kafka_dir):
                create_users(self.kafka_dir, bootstrap)
            return bootstrap

    def _write_config(self, port: int, controller_port: int) -> None:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log = self.logs_dir / "server.log"
        if log.exists():  # one previous run kept; error tails then show only this run
            os.replace(log, log.with_suffix(".log.1"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            **MEMORY_PROPERTIES,
            # After a crash (kill()) the restarted broker cannot register until the old incarnation's
            # session expires: 9 s by default; both live in one JVM on loopback, so 4 s is plenty.
            "broker.session.timeout.ms": "4000",
            "broker.heartbeat.interval.ms": "1000",
        }
        if is_secured(self.kafka_dir):
            props.update(server_properties(self.kafka_dir, port, controller_port))
        # a secured broker's holds the admin password
        write_private(self.config_path, "".join(f"{k}={v}\n" for k, v in props.items()).encode())
        (self.kafka_dir / "log4j2.properties").write_text(_LOG4J2)

    def _format(self, java: list[str]) -> None:
        """Format the data dir once; a formatted dir keeps its cluster id across restarts."""
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = new_cluster_id()
        # "--cluster-id=": an id may start with "-", which argparse would take for an option
        cmd = [*java, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(self.config_path),
               *format_args(self.kafka_dir)]
        done = subprocess.run(cmd, cwd=self.kafka_dir, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
            raise BrokerError(f"formatting {self.data_dir} failed (exit {done.returncode}):\n{tail}")

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int, bootstrap: str, timeout: float) -> None:
        """Poll until the listener accepts and answers metadata; fail fast if the JVM dies."""
        deadline = time.monotonic() + timeout
        admin = admin_config(self.kafka_dir)
        while True:
            code = proc.poll()
            if code is not None:
                self._mark_stopped()
                raise BrokerError(f"Kafka exited with code {code} while starting\n{self._log_tails()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._stop_unlocked(10)
                raise BrokerError(f"Kafka not ready within {timeout} s (stopped it)\n{self._log_tails()}")
            if _accepting(port) and _metadata_ok(bootstrap, min(2.0, remaining), admin):
                return
            time.sleep(0.1)

    def _log_tails(self) -> str:
        return _tail(self.logs_dir / "broker.out") + "\n" + _tail(self.logs_dir / "server.log")

    # ---- stop ---------------------------------------------------------------------------------
    def stop(self, timeout: float = 30) -> bool:
        """SIGTERM (a clean shutdown flushes logs and skips recovery next start), SIGKILL on timeout."""
        with self._locked():
            return self._stop_unlocked(timeout)

    def kill(self) -> None:
        """SIGKILL at once, as a crash would; the next start must recover the logs."""
        with self._locked():
            pid = self._live_pid()
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                self._wait_gone(pid, 10)
            self._mark_stopped()

    def _stop_unlocked(self, timeout: float) -> bool:
        pid = self._live_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            if not self._wait_gone(pid, timeout):
                os.kill(pid, signal.SIGKILL)
                if not self._wait_gone(pid, 10):
                    raise BrokerError(f"Kafka pid {pid} survived SIGKILL")
        self._mark_stopped()
        return pid is not None

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        """Wait for the pid to exit; not via _is_ours, as cmdline empties before the sockets close."""
        gone = wait_process_gone(pid, self._proc, timeout)
        if gone and self._proc is not None and self._proc.pid == pid:
            self._proc = None
        return gone

    def _mark_stopped(self) -> None:
        state = self._read_state()
        if state.get("pid") is not None:
            state.update(pid=None, stopped_at=time.time())
            self._write_state(state)

    def wipe(self) -> None:
        """Stop the broker and delete its data: topics, offsets and the cluster id are gone."""
        with self._locked():
            self._stop_unlocked(30)
            shutil.rmtree(self.data_dir, ignore_errors=True)
