"""`agentlog topics check`: which topics of an existing cluster break the guarantees, and the fix.

`find_problems` is a pure function of what the cluster reports (`describe_topics`) and its broker
count, so every rule is unit-tested without a broker; only `check_cluster` does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agentlog.config import Settings
from agentlog.kafka.topics import CONVERSATION_EVENTS, TOPICS, TopicSpec, describe_topics, replication_plan

# Configs whose value is a guarantee: a different value loses events or breaks ordering.
_GUARDED = ("cleanup.policy", "retention.ms", "retention.bytes", "max.message.bytes")


@dataclass(frozen=True)
class TopicProblem:
    topic: str
    problem: str
    fix: str


def _alter(topic: str, key: str, value: str) -> str:
    return f"kafka-configs.sh --bootstrap-server $BOOTSTRAP --alter --entity-type topics --entity-name {topic} " \
           f"--add-config {key}={value}"


def _spec_problems(name: str, spec: TopicSpec, info: Mapping[str, object], brokers: int) -> list[TopicProblem]:
    plan = replication_plan(brokers)
    config = info.get("config")
    config = config if isinstance(config, Mapping) else {}
    problems = []
    rf = info.get("replication_factor")
    if isinstance(rf, int) and rf < plan["replication_factor"]:
        problems.append(TopicProblem(
            name, f"replication factor {rf} on {brokers} brokers: losing one broker loses or blocks its events",
            f"raise it to {plan['replication_factor']} with kafka-reassign-partitions.sh (a reassignment JSON listing "
            f"{plan['replication_factor']} replicas per partition)"))
    isr = config.get("min.insync.replicas")
    if isr is not None and int(isr) < plan["min_insync_replicas"]:
        problems.append(TopicProblem(
            name, f"min.insync.replicas {isr}: an acks=all write may be acknowledged by a single broker",
            _alter(name, "min.insync.replicas", str(plan["min_insync_replicas"]))))
    if config.get("unclean.leader.election.enable") == "true":
        problems.append(TopicProblem(
            name, "unclean leader election is on: an out-of-sync replica can become leader and drop acknowledged events",
            _alter(name, "unclean.leader.election.enable", "false")))
    for key in _GUARDED:
        wanted, found = spec.config.get(key), config.get(key)
        if wanted is not None and found is not None and found != wanted:
            why = "the event store must keep every event" if spec.name == CONVERSATION_EVENTS else spec.purpose
            fix = _alter(name, key, wanted)
            if key == "cleanup.policy" and "compact" in found and spec.name == CONVERSATION_EVENTS:
                fix += " (events compaction already removed cannot come back: check with `agentlog replay --verify`)"
            problems.append(TopicProblem(name, f"{key}={found}, expected {wanted} ({why})", fix))
    partitions = info.get("partitions")
    if isinstance(partitions, int) and partitions != spec.partitions:
        problems.append(TopicProblem(
            name, f"{partitions} partitions, expected {spec.partitions}",
            "partition counts cannot shrink and growing them moves conversations to other partitions: "
            "create a new deployment (AGENTLOG_TOPIC_PREFIX) and drain the old one (README, \"Scale-out\")"))
    return problems


def find_problems(described: Mapping[str, Mapping[str, object]], brokers: int, prefix: str = "") -> list[TopicProblem]:
    """Every broken guarantee of agentlog's topics, as found on a cluster of `brokers` brokers."""
    problems = []
    for spec in TOPICS:
        name = f"{prefix}{spec.name}"
        info = described.get(name)
        if info is None:
            problems.append(TopicProblem(name, "missing", "agentlog init"))
        else:
            problems += _spec_problems(name, spec, info, brokers)
    return problems


def check_cluster(settings: Settings) -> tuple[int, list[TopicProblem]]:
    """(broker count, problems) of the cluster the settings point at."""
    from agentlog.kafka.topics import admin_client

    brokers = len(admin_client(settings).list_topics(timeout=30).brokers)
    return brokers, find_problems(describe_topics(settings), brokers, settings.topic_prefix)
