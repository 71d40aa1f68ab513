"""A local multi-node Kafka 4.1.1 cluster (KRaft): every node is a combined broker and controller.

Three nodes is the smallest cluster that survives the loss of one: the controller quorum keeps a
majority (2 of 3), and with replication factor 3 and min.insync.replicas 2 an acks=all write is on
two disks before it is acknowledged, so losing any one node loses no acknowledged event.

Nodes share the jar dir of `LocalBroker` and live under ``<kafka_dir>/cluster/node-<id>`` (config,
data, logs); ``cluster.json`` records the cluster id, every node's address, ports and pid, so any
process can find, check, kill or restart one node. A node may run through a launcher prefix (e.g.
``ip netns exec NS``) and listen on a host address other than loopback: the test harness uses this to
put the brokers on their own network namespace.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from agentlog.errors import BrokerError
from agentlog.kafka.broker import (
    _LOG4J2,
    KAFKA_VERSION,
    MEMORY_PROPERTIES,
    LocalBroker,
    _free_port,
    _tail,
    is_kafka_process,
    java_command,
    jvm_env,
    new_cluster_id,
    read_state_file,
    wait_process_gone,
    write_state_file,
)
from agentlog.kafka.topics import replication_plan

CLUSTER_DIR = "cluster"


def node_properties(node_id: int, host: str, port: int, controller_port: int, voters: str, data_dir: Path,
                    brokers: int) -> dict[str, str]:
    """server.properties of one node; unclean leader election stays off so a lagging replica can
    never become leader and silently drop acknowledged events."""
    plan = replication_plan(brokers)
    rf, isr = str(plan["replication_factor"]), str(plan["min_insync_replicas"])
    return {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "controller.quorum.voters": voters,
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "default.replication.factor": rf,
        "min.insync.replicas": isr,
        "unclean.leader.election.enable": "false",
        "offsets.topic.replication.factor": rf,
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": isr,
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": isr,
        "group.initial.rebalance.delay.ms": "0",
        **MEMORY_PROPERTIES,  # the same JVM budget as a single broker (broker.py)
        # A SIGKILLed node re-registers only after its old session expires; followers are dropped
        # from the ISR after replica.lag.time.max.ms, so a dead node stops blocking acks=all soon.
        "broker.session.timeout.ms": "4000",
        "broker.heartbeat.interval.ms": "1000",
        "replica.lag.time.max.ms": "10000",
        "controlled.shutdown.enable": "true",
    }


@dataclass(frozen=True)
class NodeStatus:
    node_id: int
    address: str
    pid: int | None
    registered: bool
    quorum_leader: int | None  # the controller leader as this node's quorum-state file last recorded it


@dataclass(frozen=True)
class UnderReplicated:
    topic: str
    partition: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


@dataclass(frozen=True)
class ClusterStatus:
    bootstrap: str | None
    nodes: tuple[NodeStatus, ...]
    controller: int | None
    under_replicated: tuple[UnderReplicated, ...]
    version: str = KAFKA_VERSION


def under_replicated(topics: Mapping[str, Any]) -> list[UnderReplicated]:
    """Partitions whose in-sync replica set is smaller than their replica set (from admin metadata)."""
    found = []
    for name, topic in sorted(topics.items()):
        for partition in sorted(topic.partitions.values(), key=lambda p: p.id):
            if len(partition.isrs) < len(partition.replicas):
                found.append(UnderReplicated(name, partition.id, tuple(partition.replicas), tuple(partition.isrs)))
    return found


class LocalCluster:
    """Starts, checks, kills and restarts the nodes of a local KRaft cluster under ``kafka_dir``."""

    def __init__(self, kafka_dir: Path, *, lib_dir: Path | None = None) -> None:
        self.kafka_dir = Path(kafka_dir).resolve()
        self.jars = LocalBroker(self.kafka_dir, lib_dir=lib_dir)
        self.root = self.kafka_dir / CLUSTER_DIR
        self.state_path = self.root / "cluster.json"
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    # ---- state --------------------------------------------------------------------------------
    def _read_state(self) -> dict[str, Any]:
        return read_state_file(self.state_path)

    def _write_state(self, state: dict[str, Any]) -> None:
        write_state_file(self.state_path, state)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """Hold the cluster lock and hand out the state; it is written back when the block ends, even
        on an error, so a node launched before a later one failed is still recorded (and stoppable)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            state = self._read_state()
            try:
                yield state
            finally:
                self._write_state(state)

    def node_dir(self, node_id: int) -> Path:
        return self.root / f"node-{node_id}"

    def _config_path(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "server.properties"

    def _is_ours(self, node_id: int, pid: object) -> bool:
        return is_kafka_process(pid, self._config_path(node_id))

    def node_ids(self) -> list[int]:
        return [int(n["id"]) for n in self._read_state().get("nodes", [])]

    def live_pid(self, node_id: int) -> int | None:
        for node in self._read_state().get("nodes", []):
            if node["id"] == node_id and self._is_ours(node_id, node.get("pid")):
                return int(node["pid"])
        return None

    def bootstrap(self) -> str | None:
        """Every node's address (clients need only one that answers); None before the first start."""
        nodes = self._read_state().get("nodes", [])
        return ",".join(f"{n['host']}:{n['port']}" for n in nodes) or None

    def running_bootstrap(self) -> str | None:
        """The bootstrap list if any recorded node process is alive; no network call."""
        return self.bootstrap() if any(self.live_pid(n) is not None for n in self.node_ids()) else None

    # ---- start --------------------------------------------------------------------------------
    def start(self, brokers: int = 3, *, host: str = "127.0.0.1", launcher: Sequence[str] = (),
              timeout: float = 120) -> str:
        """Start every node that is not running and wait until all of them are registered brokers.

        The node count, host and ports are fixed by the first start: the static quorum names every
        controller's address. All nodes start at once, as a quorum needs a majority to elect.
        """
        with self._locked() as state:
            if not state.get("nodes"):
                state["cluster_id"] = new_cluster_id()
                state["launcher"] = list(launcher)
                state["nodes"] = [{"id": i, "host": host, "port": _free_port(), "controller_port": _free_port(),
                                   "pid": None} for i in range(1, brokers + 1)]
            for node in state["nodes"]:
                if not self._is_ours(node["id"], node.get("pid")):
                    node["pid"] = self._launch(state, node["id"])
        return self.wait_ready(timeout=timeout)

    def start_node(self, node_id: int, timeout: float = 120) -> None:
        """(Re)start one node and wait until the whole cluster is registered again."""
        with self._locked() as state:
            node = self._node(state, node_id)
            if not self._is_ours(node_id, node.get("pid")):
                node["pid"] = self._launch(state, node_id)
        self.wait_ready(timeout=timeout)

    @staticmethod
    def _node(state: dict[str, Any], node_id: int) -> dict[str, Any]:
        nodes: list[dict[str, Any]] = state.get("nodes", [])
        for node in nodes:
            if node["id"] == node_id:
                return node
        raise BrokerError(f"the local cluster has no node {node_id}")

    def _launch(self, state: dict[str, Any], node_id: int) -> int:
        nodes = state["nodes"]
        node = self._node(state, node_id)
        voters = ",".join(f"{n['id']}@{n['host']}:{n['controller_port']}" for n in nodes)
        directory = self.node_dir(node_id)
        data, logs = directory / "data", directory / "logs"
        data.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        props = node_properties(node_id, node["host"], node["port"], node["controller_port"], voters, data, len(nodes))
        config = self._config_path(node_id)
        config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (directory / "log4j2.properties").write_text(_LOG4J2)
        lib = self.jars.ensure_jars()
        java = [*state.get("launcher", []), *java_command(lib, directory, logs)]
        if not (data / "meta.properties").exists():
            cmd = [*java, "kafka.tools.StorageTool", "format", "-t", state["cluster_id"], "-c", str(config)]
            done = subprocess.run(cmd, cwd=directory, capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                raise BrokerError(f"formatting node {node_id} failed:\n{done.stdout}{done.stderr}")
        with open(logs / "broker.out", "ab") as out:
            proc = subprocess.Popen([*java, "kafka.Kafka", str(config)], cwd=directory, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=jvm_env())
        self._procs[node_id] = proc
        return proc.pid

    def registered(self, timeout: float = 2.0) -> set[int]:
        """Ids of the brokers the cluster metadata lists (registered and unfenced)."""
        bootstrap = self.bootstrap()
        if bootstrap is None:
            return set()
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 2})
        try:
            return set(admin.list_topics(timeout=timeout).brokers)
        except KafkaException:
            return set()

    def wait_ready(self, timeout: float = 120) -> str:
        """Wait until every node is registered; fail fast (with log tails) if a node's JVM exits."""
        deadline = time.monotonic() + timeout
        wanted = set(self.node_ids())
        while not wanted <= self.registered():
            for node_id, proc in self._procs.items():
                if proc.poll() is not None and node_id in wanted and self.live_pid(node_id) == proc.pid:
                    raise BrokerError(f"node {node_id} exited with {proc.returncode}\n{self.log_tail(node_id)}")
            if time.monotonic() > deadline:
                tails = "\n".join(self.log_tail(n) for n in sorted(wanted))
                raise BrokerError(f"cluster not ready within {timeout} s\n{tails}")
            time.sleep(0.2)
        bootstrap = self.bootstrap()
        assert bootstrap is not None
        return bootstrap

    def log_tail(self, node_id: int) -> str:
        return _tail(self.node_dir(node_id) / "logs" / "server.log")

    # ---- stop ---------------------------------------------------------------------------------
    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node, as a crash would: its logs are recovered on the next start."""
        self._signal_nodes([node_id], signal.SIGKILL, timeout=10)

    def stop_node(self, node_id: int, timeout: float = 60) -> None:
        """SIGTERM: a controlled shutdown moves the node's leaderships away before it exits."""
        self._signal_nodes([node_id], signal.SIGTERM, timeout=timeout)

    def stop(self, timeout: float = 60) -> bool:
        """Stop every node; True if any was running. All at once: stopped one by one, the last
        nodes would lose their controller quorum and wait out the timeout of a controlled shutdown."""
        return self._signal_nodes(self.node_ids(), signal.SIGTERM, timeout=timeout)

    def wipe(self) -> None:
        """Stop every node and delete the cluster's data, ports and id: the next start is a new cluster."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def _signal_nodes(self, node_ids: list[int], signum: signal.Signals, timeout: float) -> bool:
        """Signal the live ones among `node_ids`, SIGKILL any still there after `timeout`; True if any was live."""
        live = {node_id: pid for node_id in node_ids if (pid := self.live_pid(node_id)) is not None}
        for pid in live.values():
            os.kill(pid, signum)
        deadline = time.monotonic() + timeout
        for node_id, pid in live.items():
            if not self._wait_gone(node_id, pid, max(0.0, deadline - time.monotonic())):
                os.kill(pid, signal.SIGKILL)
                if not self._wait_gone(node_id, pid, 10):
                    raise BrokerError(f"node {node_id} (pid {pid}) survived SIGKILL")
        with self._locked() as state:
            for node_id in live:
                self._node(state, node_id)["pid"] = None
        return bool(live)

    def _wait_gone(self, node_id: int, pid: int, timeout: float) -> bool:
        return wait_process_gone(pid, self._procs.get(node_id), timeout)

    # ---- status -------------------------------------------------------------------------------
    def quorum_leader(self, node_id: int) -> int | None:
        """The controller leader recorded in the node's quorum-state file (KRaft writes it on every election)."""
        path = self.node_dir(node_id) / "data" / "__cluster_metadata-0" / "quorum-state"
        try:
            leader = json.loads(path.read_text()).get("leaderId", -1)
        except (OSError, ValueError):
            return None
        return int(leader) if isinstance(leader, int) and leader >= 0 else None

    def status(self, timeout: float = 3.0) -> ClusterStatus:
        """Each node, the quorum leader and the under-replicated partitions (network calls only if up)."""
        state = self._read_state()
        bootstrap = self.running_bootstrap()
        brokers: set[int] = set()
        lagging: list[UnderReplicated] = []
        if bootstrap is not None:
            admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 2})
            try:
                metadata = admin.list_topics(timeout=timeout)
                brokers = set(metadata.brokers)
                lagging = under_replicated(metadata.topics)
            except KafkaException:
                pass
        nodes = tuple(NodeStatus(n["id"], f"{n['host']}:{n['port']}", self.live_pid(n["id"]), n["id"] in brokers,
                                 self.quorum_leader(n["id"])) for n in state.get("nodes", []))
        views = [n.quorum_leader for n in nodes if n.pid is not None and n.quorum_leader is not None]
        controller = max(set(views), key=views.count) if views else None
        return ClusterStatus(bootstrap, nodes, controller, tuple(lagging))
