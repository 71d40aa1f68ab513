"""The broker's memory budget (broker.py, "Broker memory" in BENCHMARK.md) reaches every JVM we start:
the single broker's server.properties, each cluster node's, and the java command line of both."""

from __future__ import annotations

from pathlib import Path

from agentlog.kafka.broker import HEAP_MB, JVM_ENV, MEMORY_PROPERTIES, LocalBroker, java_command, jvm_env
from agentlog.kafka.cluster import node_properties


def _properties(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def test_single_broker_config_carries_the_memory_settings(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path / "kafka", lib_dir=tmp_path / "lib")
    broker._write_config(19092, 19093)
    written = _properties(broker.config_path)
    assert {key: written.get(key) for key in MEMORY_PROPERTIES} == MEMORY_PROPERTIES
    assert written["log.cleaner.dedupe.buffer.size"] == str(4 * 1024 * 1024)  # not the 128 MB default
    assert written["offsets.topic.num.partitions"] == written["transaction.state.log.num.partitions"] == "6"


def test_cluster_nodes_share_the_single_broker_settings(tmp_path: Path) -> None:
    props = node_properties(2, "127.0.0.1", 19094, 19095, "1@127.0.0.1:1,2@127.0.0.1:2,3@127.0.0.1:3",
                            tmp_path, brokers=3)
    assert {key: props.get(key) for key in MEMORY_PROPERTIES} == MEMORY_PROPERTIES


def test_java_command_fixes_the_heap_and_keeps_the_environment(tmp_path: Path) -> None:
    cmd = java_command(tmp_path / "lib", tmp_path / "conf", tmp_path / "logs")
    assert cmd[0] == "java" and cmd[-2:] == ["-cp", f"{tmp_path / 'lib'}/*"]
    # Xms = Xmx: the heap is reserved once at its final size; Serial GC, no heap resizing.
    assert f"-Xms{HEAP_MB}m" in cmd and f"-Xmx{HEAP_MB}m" in cmd and "-XX:+UseSerialGC" in cmd
    assert HEAP_MB + 110 <= 300  # + the ~110 MB measured outside the heap, within the 300 MB budget
    assert f"-Dlog4j2.configurationFile={tmp_path / 'conf' / 'log4j2.properties'}" in cmd
    env = jvm_env()
    assert env["MALLOC_ARENA_MAX"] == JVM_ENV["MALLOC_ARENA_MAX"] == "2"
    assert "PATH" in env
