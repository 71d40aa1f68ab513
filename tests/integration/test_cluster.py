"""Cluster mode on a real three-node KRaft cluster: topics adapt to it, `kafka status` and `topics
check` report on it, and under load the system survives a SIGKILL of the conversation-events leader
and a rolling restart of all three brokers with nothing lost and nothing done twice.

Short form in CI (one round of faults); the long form repeats them: `AGENTLOG_CLUSTER_ROUNDS=5
pytest -s tests/integration/test_cluster.py`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from test_rebalance import current

from agentlog.config import Settings
from agentlog.kafka.cluster import LocalCluster
from agentlog.kafka.topics import CONVERSATION_EVENTS, TOPICS, describe_topics, ensure_topics
from agentlog.supervisor import spawn_command
from fault_load import FaultReport, Load
from helpers import Stack, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900),
              pytest.mark.skipif(shutil.which("java") is None, reason="needs Java 17")]

REPO = Path(__file__).resolve().parents[2]
ROUNDS = int(os.environ.get("AGENTLOG_CLUSTER_ROUNDS", "1"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster") / "var" / "kafka", lib_dir=REPO / "var" / "kafka" / "lib")
    try:
        cluster.start(3, timeout=180)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster_env(agentlog_env: dict[str, str], cluster: LocalCluster) -> dict[str, str]:
    bootstrap = cluster.bootstrap()
    assert bootstrap is not None
    return {**agentlog_env, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}


def agentlog(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentlog", *args], env={**env, "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=120)


def partition_leaders(settings: Settings) -> list[int]:
    """The leader of each conversation-events partition, by partition."""
    metadata = AdminClient({"bootstrap.servers": settings.require_bootstrap()}).list_topics(timeout=10)
    partitions = metadata.topics[settings.topic(CONVERSATION_EVENTS)].partitions
    return [partitions[p].leader for p in sorted(partitions)]


def fully_replicated(cluster: LocalCluster) -> bool:
    status = cluster.status()
    return all(node.registered for node in status.nodes) and not status.under_replicated


def test_topics_status_and_check_adapt_to_the_cluster(cluster_env: dict[str, str], cluster: LocalCluster) -> None:
    settings = Settings.from_env(cluster_env)
    ensure_topics(settings)
    described = describe_topics(settings)
    assert {name: (info["replication_factor"], info["config"]["min.insync.replicas"])  # type: ignore[index]
            for name, info in described.items()} == {settings.topic(s.name): (3, "2") for s in TOPICS}

    checked = agentlog(cluster_env, "topics", "check")
    assert checked.returncode == 0 and "3-broker cluster" in checked.stdout, checked.stdout + checked.stderr

    # The CLI finds the local cluster from var/ (no KAFKA_BOOTSTRAP_SERVERS), as `agentlog up` does.
    local = {k: v for k, v in cluster_env.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    local["AGENTLOG_VAR_DIR"] = str(cluster.kafka_dir.parent)
    status = agentlog(local, "kafka", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.count("registered") == 3 and "NOT registered" not in status.stdout
    assert "3 nodes; controller quorum leader: " in status.stdout and "under-replicated partitions: 0" in status.stdout

    # An event store made by hand with one replica and compaction: both reported, with the fix.
    bad = {**cluster_env, "AGENTLOG_TOPIC_PREFIX": cluster_env["AGENTLOG_TOPIC_PREFIX"] + "bad."}
    bad_settings = Settings.from_env(bad)
    admin = AdminClient({"bootstrap.servers": bad["KAFKA_BOOTSTRAP_SERVERS"]})
    topic = NewTopic(bad_settings.topic(CONVERSATION_EVENTS), num_partitions=6, replication_factor=1,
                     config={"cleanup.policy": "compact"})
    admin.create_topics([topic])[topic.topic].result(30)
    ensure_topics(bad_settings)
    checked = agentlog(bad, "topics", "check")
    assert checked.returncode == 1, checked.stdout
    assert "replication factor 1 on 3 brokers" in checked.stdout and "cleanup.policy=compact" in checked.stdout
    assert "kafka-reassign-partitions" in checked.stdout and "--add-config cleanup.policy=delete" in checked.stdout


def test_up_scale_runs_instances_that_share_the_partitions(cluster_env: dict[str, str]) -> None:
    with Stack(cluster_env) as stack:  # only the client: `agentlog up` runs the services
        up = spawn_command([sys.executable, "-m", "agentlog", "up", "--scale", "orchestrator=2,tool-worker=2",
                            "--port", "0"], stack.log_dir / "up.log", stack.env)
        try:
            stack.ask("What is 2+3 and what is 10*4?", "scale-1", timeout=120)

            def shared(service: str) -> bool:
                first, second = current(stack, service), current(stack, f"{service}#1")
                return bool(first and second) and sorted(first + second) == list(range(6))

            for service in ("orchestrator", "tool-worker"):
                wait_for(partial(shared, service), timeout=60, interval=0.5,
                         what=f"two {service} instances to split the six partitions")
        finally:
            os.killpg(up.pid, signal.SIGTERM)
            assert up.wait(60) == 0, (stack.log_dir / "up.log").read_text()[-3000:]


def test_leader_kill_and_rolling_restart_under_load(cluster_env: dict[str, str], cluster: LocalCluster) -> None:
    report = FaultReport()
    # A short watchdog: a transaction left hanging by a lost coordinator ends its process sooner.
    with Stack({**cluster_env, "AGENTLOG_TXN_WATCHDOG_S": "15"}) as stack, Load(stack, "cl") as load:
        stack.start()
        report.add("none (first answer)", load.probe(time.monotonic()))
        for _ in range(ROUNDS):
            before = partition_leaders(stack.settings)
            victim = Counter(before).most_common(1)[0][0]
            fault_at = time.monotonic()
            cluster.kill_node(victim)
            report.add(f"SIGKILL node {victim} (leader of {before.count(victim)} conversation-events partitions)",
                       load.probe(fault_at, partition=before.index(victim)))
            assert victim not in partition_leaders(stack.settings), "leadership moved off the dead node"
            cluster.start_node(victim)
            wait_for(lambda: fully_replicated(cluster), timeout=120, interval=0.5, what="the cluster to heal")
            for node in cluster.node_ids():
                fault_at = time.monotonic()
                cluster.stop_node(node)
                stopped = time.monotonic() - fault_at
                cluster.start_node(node)
                back = time.monotonic() - fault_at
                report.add(f"rolling restart of node {node} (stopped {stopped:.1f} s, registered {back:.1f} s)",
                           load.probe(fault_at))
                wait_for(lambda: fully_replicated(cluster), timeout=120, interval=0.5, what="in-sync replicas")
        summary = load.verify()
    print("\ncluster faults:\n" + "\n".join(report.lines()) + f"\n  {summary}")
    assert summary["questions"] >= 10

