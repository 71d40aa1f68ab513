"""The topics agentlog uses, declared as data, and the admin step that creates them.

Choices (see README, "Topics"):
- Work topics are keyed by conversation id, so one conversation's messages stay in order on one
  partition; their partition count bounds how many instances of a service can share the work.
- `conversation-events` is the event store: never deleted by time or size (`retention.ms=-1`),
  and never compacted (every event matters, not just the latest per key).
- Command topics keep a week: once a command is consumed its effect is in the event store.
- `schema-registry` is compacted: only the latest record per subject@version matters.
- `dead-letter-queue` keeps everything until an operator redrives or purges it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]

from agentlog.config import Settings
from agentlog.errors import BrokerError

WEEK_MS = str(7 * 24 * 3600 * 1000)
HOUR_MS = str(3600 * 1000)

USER_COMMANDS = "user-commands"
CONVERSATION_EVENTS = "conversation-events"
TOOL_INVOCATION_REQUESTS = "tool-invocation-requests"
SYNTHESIS_REQUESTS = "synthesis-requests"
DEAD_LETTER_QUEUE = "dead-letter-queue"
SCHEMA_REGISTRY = "schema-registry"
ANSWER_STREAM = "answer-stream"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    purpose: str
    config: Mapping[str, str] = field(default_factory=dict)


WORK_PARTITIONS = 6
DEAD_LETTER_MAX_BYTES = 4 * 1024 * 1024

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(USER_COMMANDS, WORK_PARTITIONS, "commands from users (questions, resets)",
              {"cleanup.policy": "delete", "retention.ms": WEEK_MS}),
    TopicSpec(CONVERSATION_EVENTS, WORK_PARTITIONS, "the event store: every step of every turn",
              {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}),
    TopicSpec(TOOL_INVOCATION_REQUESTS, WORK_PARTITIONS, "commands to tool workers",
              {"cleanup.policy": "delete", "retention.ms": WEEK_MS}),
    TopicSpec(SYNTHESIS_REQUESTS, WORK_PARTITIONS, "commands to the synthesis worker",
              {"cleanup.policy": "delete", "retention.ms": WEEK_MS}),
    # Answer text as it is written: best-effort, non-transactional, worthless once the answer is recorded.
    TopicSpec(ANSWER_STREAM, WORK_PARTITIONS, "answer text deltas as they are written (the page streams them)",
              {"cleanup.policy": "delete", "retention.ms": HOUR_MS}),
    # A dead letter carries its original base64-encoded: 4/3 of a message at the other topics' 1 MB limit.
    TopicSpec(DEAD_LETTER_QUEUE, 1, "messages no consumer could accept, with the reason and original bytes",
              {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1",
               "max.message.bytes": str(DEAD_LETTER_MAX_BYTES)}),
    TopicSpec(SCHEMA_REGISTRY, 1, "JSON Schemas by subject@version",
              {"cleanup.policy": "compact", "retention.ms": "-1", "min.compaction.lag.ms": "0"}),
)


def replication_plan(brokers: int) -> dict[str, int]:
    """Replication for a cluster of `brokers` nodes, chosen from the cluster found (README, "Cluster mode").

    - replication factor min(3, brokers): three copies survive one lost node while another restarts;
    - min.insync.replicas 2 from 3 nodes on: an acks=all write is on two nodes before it counts, and a
      partition down to one copy refuses writes rather than keep events on one disk; below 3 nodes it
      must be 1, or a single node could not accept writes at all.
    """
    return {"replication_factor": max(1, min(3, brokers)), "min_insync_replicas": 2 if brokers >= 3 else 1}


def admin_client(settings: Settings) -> AdminClient:
    from agentlog.kafka.client import base_config

    return AdminClient(base_config(settings))


def replication_for(live: int, known: int) -> dict[str, int]:
    """The replication plan for the `live` brokers, refused when `known` brokers (live, or holding
    replicas of existing topics) would give another: a topic created while a node is down would keep
    the lower replication factor for good."""
    plan = replication_plan(live)
    if known > live and replication_plan(known) != plan:
        raise BrokerError(f"{known - live} of {known} brokers are down: topics created now would get replication "
                          f"factor {plan['replication_factor']} instead of {replication_plan(known)['replication_factor']} "
                          "for good; start the missing brokers, then run `agentlog init` again")
    return plan


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create every missing topic with its spec; returns the names created. Safe to run repeatedly."""
    admin = admin_client(settings)
    metadata = admin.list_topics(timeout=timeout)
    wanted = [spec for spec in TOPICS if settings.topic(spec.name) not in metadata.topics]
    if not wanted:
        return []
    known = set(metadata.brokers) | {r for t in metadata.topics.values() for p in t.partitions.values()
                                     for r in p.replicas}
    plan = replication_for(len(metadata.brokers), len(known))
    futures = admin.create_topics(
        [NewTopic(settings.topic(s.name), num_partitions=s.partitions, replication_factor=plan["replication_factor"],
                  config={**s.config, "min.insync.replicas": str(plan["min_insync_replicas"])}) for s in wanted],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except Exception as error:
            if "TOPIC_ALREADY_EXISTS" in str(error):
                continue
            raise BrokerError(f"could not create topic {name}: {error}") from error
    _wait_for_leaders(admin, [settings.topic(s.name) for s in wanted], timeout)
    return created


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout: float) -> None:
    """New partitions have no leader for a moment; clients that read right away would fail."""
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        if all(name in topics and topics[name].partitions
               and all(p.leader >= 0 for p in topics[name].partitions.values()) for name in names):
            return
        if time.monotonic() > deadline:
            raise BrokerError(f"partitions of {names} still have no leader after {timeout} s")
        time.sleep(0.05)


def describe_topics(settings: Settings, timeout: float = 30.0) -> dict[str, dict[str, object]]:
    """Partition count and the configs agentlog sets, as the cluster reports them."""
    admin = admin_client(settings)
    metadata = admin.list_topics(timeout=timeout).topics
    result: dict[str, dict[str, object]] = {}
    names = [settings.topic(s.name) for s in TOPICS if settings.topic(s.name) in metadata]
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
    configs = admin.describe_configs(resources, request_timeout=timeout) if resources else {}
    for resource, future in configs.items():
        entries = future.result()
        partitions = metadata[resource.name].partitions.values()
        result[resource.name] = {
            "partitions": len(partitions),
            "replication_factor": min((len(p.replicas) for p in partitions), default=0),
            "config": {key: entry.value for key, entry in entries.items()},
        }
    return result
