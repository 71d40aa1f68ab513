"""`agentlog topics check` rules, on cluster descriptions as `describe_topics` returns them, and the
cluster's pure parts: node configuration and under-replicated partitions."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from agentlog.errors import BrokerError
from agentlog.kafka.broker import new_cluster_id
from agentlog.kafka.cluster import node_properties, under_replicated
from agentlog.kafka.topics import CONVERSATION_EVENTS, TOPICS, replication_for, replication_plan
from agentlog.kafka.topics_check import find_problems


def healthy(brokers: int, prefix: str = "") -> dict[str, dict[str, object]]:
    plan = replication_plan(brokers)
    return {f"{prefix}{spec.name}": {
        "partitions": spec.partitions, "replication_factor": plan["replication_factor"],
        "config": {**spec.config, "min.insync.replicas": str(plan["min_insync_replicas"]),
                   "unclean.leader.election.enable": "false"}} for spec in TOPICS}


def test_replication_plan_adapts_to_the_cluster() -> None:
    assert replication_plan(1) == {"replication_factor": 1, "min_insync_replicas": 1}
    assert replication_plan(2) == {"replication_factor": 2, "min_insync_replicas": 1}
    assert replication_plan(3) == {"replication_factor": 3, "min_insync_replicas": 2}
    assert replication_plan(5) == {"replication_factor": 3, "min_insync_replicas": 2}


def test_a_healthy_cluster_has_no_problems() -> None:
    assert find_problems(healthy(1), 1) == []
    assert find_problems(healthy(3, "p."), 3, "p.") == []


def test_replication_factor_one_on_three_brokers_is_reported_with_the_fix() -> None:
    described = healthy(3)
    described[CONVERSATION_EVENTS] = {**described[CONVERSATION_EVENTS], "replication_factor": 1}
    problems = find_problems(described, 3)
    assert [p.topic for p in problems] == [CONVERSATION_EVENTS]
    assert "replication factor 1" in problems[0].problem and "kafka-reassign-partitions" in problems[0].fix


def test_a_compacted_event_store_and_a_low_min_isr_are_reported() -> None:
    described = healthy(3)
    config = {**described[CONVERSATION_EVENTS]["config"], "cleanup.policy": "compact",  # type: ignore[dict-item]
              "min.insync.replicas": "1", "unclean.leader.election.enable": "true"}
    described[CONVERSATION_EVENTS] = {**described[CONVERSATION_EVENTS], "config": config}
    problems = {p.problem.split(" ")[0].split("=")[0]: p for p in find_problems(described, 3)}
    assert set(problems) == {"cleanup.policy", "min.insync.replicas", "unclean"}
    assert "--add-config cleanup.policy=delete" in problems["cleanup.policy"].fix
    assert "--add-config min.insync.replicas=2" in problems["min.insync.replicas"].fix
    assert "unclean.leader.election.enable=false" in problems["unclean"].fix


def test_missing_topics_and_wrong_partition_counts_are_reported() -> None:
    described = healthy(1)
    del described["schema-registry"]
    described[CONVERSATION_EVENTS] = {**described[CONVERSATION_EVENTS], "partitions": 3}
    problems = find_problems(described, 1)
    assert [(p.topic, p.fix) for p in problems if p.problem == "missing"] == [("schema-registry", "agentlog init")]
    assert any(p.topic == CONVERSATION_EVENTS and "3 partitions" in p.problem for p in problems)


def test_cluster_nodes_are_configured_for_the_guarantees() -> None:
    props = node_properties(2, "10.0.0.1", 9092, 9093, "1@h:1,2@h:2,3@h:3", Path("/d"), brokers=3)
    assert props["node.id"] == "2" and props["controller.quorum.voters"] == "1@h:1,2@h:2,3@h:3"
    assert props["advertised.listeners"] == "PLAINTEXT://10.0.0.1:9092"
    assert (props["default.replication.factor"], props["min.insync.replicas"]) == ("3", "2")
    assert (props["transaction.state.log.replication.factor"], props["transaction.state.log.min.isr"]) == ("3", "2")
    assert props["unclean.leader.election.enable"] == "false"


def test_under_replicated_partitions_are_those_missing_an_in_sync_replica() -> None:
    def partition(pid: int, isrs: list[int]) -> SimpleNamespace:
        return SimpleNamespace(id=pid, replicas=[1, 2, 3], isrs=isrs)

    topics = {"b": SimpleNamespace(partitions={0: partition(0, [1, 2, 3]), 1: partition(1, [2, 3])}),
              "a": SimpleNamespace(partitions={0: partition(0, [3])})}
    assert [(u.topic, u.partition, u.isr) for u in under_replicated(topics)] == [("a", 0, (3,)), ("b", 1, (2, 3))]


def test_cluster_ids_never_look_like_an_option_to_the_storage_tool() -> None:
    ids = {new_cluster_id() for _ in range(2000)}  # one in 64 random ids would start with '-'
    assert len(ids) == 2000 and not any(i.startswith("-") for i in ids)


def test_topics_are_not_created_with_less_replication_while_a_broker_is_down() -> None:
    assert replication_for(3, 3) == {"replication_factor": 3, "min_insync_replicas": 2}
    assert replication_for(4, 5) == replication_plan(5)  # one of five down: still three copies, allowed
    with pytest.raises(BrokerError, match=r"1 of 3 brokers are down: .* replication factor 2 instead of 3"):
        replication_for(2, 3)
    assert replication_for(1, 1) == {"replication_factor": 1, "min_insync_replicas": 1}
