"""The metrics service against a real broker and the real services."""

from __future__ import annotations

import socket
from typing import Any

import httpx

from agentlog.kafka.reader import watermarks
from agentlog.kafka.topics import CONVERSATION_EVENTS, USER_COMMANDS
from agentlog.services.metrics.lag import LagReader
from helpers import Stack, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None


def test_metrics_service_shows_two_answered_conversations_with_plausible_stage_latencies(stack: Stack) -> None:
    port = free_port()
    stack.start("metrics", extra_env={"AGENTLOG_METRICS_PORT": str(port)})
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: fetch(f"{base}/metrics.json"), timeout=60, what="the metrics endpoint")
    stack.ask("What is 12.5% of 240?", "conv-m1")
    stack.ask("What is 2+3 and what is 10*4?", "conv-m2")

    def two_answers() -> dict[str, Any] | None:
        response = fetch(f"{base}/metrics.json")
        data: dict[str, Any] | None = response.json() if response is not None else None
        return data if data and data["answers"].get("completed") == 2 else None

    data = wait_for(two_answers, timeout=30, what="two answers in /metrics.json")
    assert data["conversations"] == 2 and data["duplicates"] == 0
    latency = data["latencySeconds"]
    assert latency["end_to_end"]["count"] == 2 and latency["tool:calculateMath"]["count"] == 3
    for stage in ("routing", "dispatch", "execution", "synthesis"):
        assert latency[stage]["count"] == 2
        assert 0 <= latency[stage]["max"] <= latency["end_to_end"]["max"] < 30
    assert set(data["lag"]["byGroup"]) >= {"router", "orchestrator", "tool-worker", "aggregator", "synthesis"}

    text = httpx.get(f"{base}/metrics", timeout=5).text
    for name in ("agentlog_turn_latency_seconds_bucket", "agentlog_stage_latency_seconds_bucket",
                 "agentlog_tool_latency_seconds_bucket", "agentlog_events_total", "agentlog_consumer_lag"):
        assert name in text
    assert 'agentlog_turn_latency_seconds_count 2.0' in text
    stack.assert_alive()


def test_lag_reads_every_partitions_watermarks_in_one_batch_as_a_per_partition_query_would(stack: Stack) -> None:
    stack.ask("What is 6 * 7?", "conv-lag")
    reader = LagReader(stack.settings, {"orchestrator": (CONVERSATION_EVENTS,), "router": (USER_COMMANDS,)})
    try:
        keys = {(stack.settings.topic(t), p) for t in (CONVERSATION_EVENTS, USER_COMMANDS)
                for p in reader._partitions_of(stack.settings.topic(t))}
        batched = reader._watermarks(keys)
        assert batched == {key: watermarks(reader.consumer, *key) for key in keys}
        assert any(high > 0 for _, high in batched.values())  # the question and its events are counted
        rows = reader.read()
        assert {(r.group, r.topic) for r in rows} == {("orchestrator", CONVERSATION_EVENTS), ("router", USER_COMMANDS)}
        assert all(r.lag == max(0, r.high - (r.committed if r.committed is not None else batched[
            (stack.settings.topic(r.topic), r.partition)][0])) for r in rows)
    finally:
        reader.close()
