"""`agentlog topics check` rules, on cluster descriptions as `describe_topics` returns them."""

from __future__ import annotations

from agentlog.kafka.topics import CONVERSATION_EVENTS, TOPICS, replication_plan
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
