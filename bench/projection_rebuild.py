"""Measure how fast the history projection rebuilds from the log (issue 10: >= 100,000 events/s).

Writes N synthetic turns (4 events each, 2 of them folded by the history) to a fresh topic prefix
on the broker at KAFKA_BOOTSTRAP_SERVERS, each with its subject header as the services write them,
then times `agentlog projections rebuild`'s function RUNS times over the same log (default 3), with
AGENTLOG_REBUILD_WORKERS processes (default one per CPU, each folding a share of the partitions; 1: serial).

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 .venv/bin/python bench/projection_rebuild.py 25000 [RUNS]
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import tempfile
import time
import uuid

from confluent_kafka import Producer

from agentlog.config import Settings
from agentlog.events.codec import SUBJECT_HEADER, Codec
from agentlog.events.envelope import caused_by, command, parse_timestamp
from agentlog.kafka.client import producer_config
from agentlog.kafka.topics import CONVERSATION_EVENTS, ensure_topics
from agentlog.services.projections.service import rebuild, rebuild_workers_from_env


def main(turns: int, runs: int) -> None:
    env = dict(os.environ, AGENTLOG_TOPIC_PREFIX=f"rebuild{uuid.uuid4().hex[:8]}.",
               AGENTLOG_VAR_DIR=tempfile.mkdtemp(prefix="agentlog-rebuild-"))
    settings = Settings.from_env(env)
    ensure_topics(settings)
    codec = Codec()
    producer = Producer({**producer_config(settings, "rebuild-bench"), "linger.ms": 20})
    topic = settings.topic(CONVERSATION_EVENTS)
    events = 0
    started = time.perf_counter()
    for n in range(turns):
        root = command("UserQueryReceived", conversation_id=f"c{n % 500}", turn_id=f"t{n}", user_id="u",
                       payload={"userInput": f"What is {n} * 2?"}, source="bench")
        now = parse_timestamp(root.timestamp)
        chain = [("UserQueryReceived", {"userInput": root.payload["userInput"], "language": "en"}),
                 ("PlanGenerated", {"plan": {"steps": [], "finalAnswerSynthesisRequired": True},
                                    "planner": "bench", "language": "en"}),
                 ("PlanCompleted", {"finalAnswerSynthesisRequired": True, "stepCount": 0}),
                 ("FinalAnswerSynthesized", {"message": f"{n} * 2 = {2 * n}.", "outcome": "completed",
                                             "synthesizer": "bench"})]
        for type_, payload in chain:
            event = caused_by(root, "event", type_, payload, source="bench", now=now)
            producer.produce(topic, key=root.conversation_id.encode(), value=codec.encode(event),
                             headers=[(SUBJECT_HEADER, event.subject.encode())])
            events += 1
            producer.poll(0)
    producer.flush(60)
    print(f"wrote {events} events in {time.perf_counter() - started:.1f} s")
    rates, cpu_rates = [], []
    print(f"{rebuild_workers_from_env()} rebuild processes (AGENTLOG_REBUILD_WORKERS)")
    for _ in range(runs):
        started, cpu_started = time.perf_counter(), cpu_seconds()
        report = rebuild(settings, codec)
        elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
        rates.append(events / elapsed)
        cpu_rates.append(events / cpu)
        # CPU seconds (all threads, librdkafka's included, and the reader processes') say more than wall
        # time on a shared machine
        print(f"rebuilt the history projection from {report.messages} events ({report.invalid} invalid) in "
              f"{elapsed:.2f} s: {rates[-1]:,.0f} events/s ({cpu:.2f} CPU s: {cpu_rates[-1]:,.0f} events per CPU second)")
    print(f"{runs} runs: min {min(rates):,.0f} / median {statistics.median(rates):,.0f} events/s; "
          f"min {min(cpu_rates):,.0f} / median {statistics.median(cpu_rates):,.0f} events per CPU second")


def cpu_seconds() -> float:
    """This process's CPU time and that of its finished children (the rebuild's reader processes)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000, int(sys.argv[2]) if len(sys.argv) > 2 else 3)
