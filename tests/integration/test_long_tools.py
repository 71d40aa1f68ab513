"""Long-running tools: a call may outlive the tool worker's max.poll.interval.ms without the group
evicting the worker (which would hand the call to a new owner and start it twice); a rebalance in the
middle of calls never commits past them; and a call past its step's deadline stops there and still
has its result recorded.

Calls run on the worker's executor while the loop keeps polling, with the call's partition paused
(kafka/eos.py, services/toolworker/). Every step goes through the tool worker here
(AGENTLOG_LOCAL_TOOLS=""), so the other conversations' answers prove that the worker kept serving.
"""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Container, Iterator
from itertools import count
from typing import Any

import pytest

from agentlog.events.envelope import Envelope
from agentlog.web.partitioner import partition_for
from helpers import Stack, tool_counts, wait_for

pytestmark = pytest.mark.timeout(240)

# librdkafka refuses a max.poll.interval.ms below session.timeout.ms (10 s, kafka/client.py).
POLL_INTERVAL_S = 10
SLOW_S = POLL_INTERVAL_S + 4
PARTITIONS = 6  # of tool-invocation-requests (kafka/topics.py)


@pytest.fixture
def stack(agentlog_env: dict[str, str]) -> Iterator[Stack]:
    with Stack(agentlog_env | {"AGENTLOG_LOCAL_TOOLS": ""}) as stack:
        stack.start("router", "orchestrator", "aggregator", "synthesis")
        yield stack


def start_worker(stack: Stack) -> None:
    stack.start("tool-worker", extra_env={"AGENTLOG_RDKAFKA_MAX_POLL_INTERVAL_MS": str(POLL_INTERVAL_S * 1000)})


def sleep_plan(seconds: float, label: str, **step: Any) -> dict[str, Any]:
    return {"steps": [{"id": "nap", "tool": "sleepFor", "arguments": {"seconds": seconds, "label": label},
                       "dependsOn": [], **step}],
            "finalAnswerSynthesisRequired": True}


def starts_of(stack: Stack, label: str) -> list[dict[str, Any]]:
    return [start for start in tool_counts(stack.env)[0] if start["label"] == label]


def turn_events(stack: Stack, sent: Envelope) -> list[Envelope]:
    return [e for e in stack.conversation_log(sent.conversation_id) if e.turn_id == sent.turn_id]


def answer_of(events: list[Envelope]) -> dict[str, Any]:
    [answer] = [e.payload for e in events if e.type == "FinalAnswerSynthesized"]
    return dict(answer)


def assigned(stack: Stack, key: str) -> list[int]:
    """The partitions a tool-worker instance ("tool-worker#2") was last assigned (empty before its first)."""
    found = re.findall(r"tool-worker assigned (\[.*\])", stack.log(key))
    return sorted(partition for _topic, partition in ast.literal_eval(found[-1])) if found else []


def conversations_on(partitions: Container[int], prefix: str) -> Iterator[str]:
    """Conversation ids whose requests land on one of `partitions` (placed as the producers place them)."""
    for index in count():
        conversation = f"{prefix}-{index}"
        if partition_for(conversation.encode(), PARTITIONS) in partitions:
            yield conversation


def test_a_call_longer_than_the_poll_interval_runs_once_while_others_are_answered(stack: Stack) -> None:
    start_worker(stack)
    busy = partition_for(b"long-call", PARTITIONS)
    slow = stack.client.question("long-call", "tester", "nap", plan=sleep_plan(SLOW_S, "nap", timeoutMs=60_000))
    wait_for(lambda: starts_of(stack, "nap"), timeout=60, what="the long call to start")
    started = time.monotonic()
    # Its partition is paused while the call runs: this one waits, then must be read, not skipped.
    behind = stack.client.question(next(conversations_on({busy}, "behind")), "tester", "What is 1+1?")
    answered = 0
    elsewhere = conversations_on(set(range(PARTITIONS)) - {busy}, "other")
    while time.monotonic() - started < POLL_INTERVAL_S + 1:  # on past the point where the group would evict it
        _, events = stack.ask("What is 2+3?", next(elsewhere), timeout=30)
        assert any(e.type == "FinalAnswerSynthesized" for e in events)
        answered += 1
    assert not tool_counts(stack.env)[1], "the long call should still be running"
    assert answered >= 3

    stack.follow(slow, timeout=60)
    assert answer_of(list(stack.follow(behind, timeout=30)))["outcome"] == "completed"
    events = turn_events(stack, slow)
    assert answer_of(events)["outcome"] == "completed"
    [result] = {e.id: e for e in events if e.type == "ToolInvocationResulted"}.values()
    assert result.payload["status"] == "succeeded"
    assert result.payload["durationMs"] >= SLOW_S * 1000
    assert len(starts_of(stack, "nap")) == 1, "started again: the worker lost its partition mid-call"
    assert list(tool_counts(stack.env)[1].values()) == [1]
    worker_log = stack.log("tool-worker")
    assert worker_log.count("tool-worker assigned") == 1 and "tool-worker revoked" not in worker_log
    stack.assert_alive()


def test_a_call_past_its_deadline_stops_and_its_late_result_is_recorded(stack: Stack) -> None:
    start_worker(stack)
    sent, _ = stack.ask("nap", "past-deadline", plan=sleep_plan(SLOW_S, "late", timeoutMs=2000, maxAttempts=1),
                        timeout=60)
    events = wait_for(lambda: [e for e in turn_events(stack, sent) if e.type == "ToolInvocationResulted"] and
                      turn_events(stack, sent), timeout=30, what="the timed-out call's result")
    assert answer_of(events)["outcome"] == "failed"
    assert any(e.type == "StepTimerFired" for e in events)
    [result] = {e.id: e for e in events if e.type == "ToolInvocationResulted"}.values()
    assert result.payload["status"] == "failed" and result.payload["error"]["type"] == "Timeout"
    assert result.payload["durationMs"] < SLOW_S * 1000 / 2, "the call should stop at its deadline"
    assert len(starts_of(stack, "late")) == 1 and not tool_counts(stack.env)[1]
    _, events = stack.ask("What is 2+3?", "past-deadline", timeout=30)  # the worker is free again
    assert any(e.type == "FinalAnswerSynthesized" for e in events)


def test_a_rebalance_during_calls_reruns_only_those_that_moved_with_one_effect_each(stack: Stack) -> None:
    stack.start_instance("tool-worker", "1")
    wait_for(lambda: assigned(stack, "tool-worker#1"), timeout=60, what="tool-worker#1 to own the partitions")
    # The range assignor splits six partitions between two members as 0-2 and 3-5: one call stays, one
    # moves. The calls outlast a second worker's start-up (seconds, on a loaded machine).
    sent = {label: stack.client.question(next(conversations_on({partition}, label)), "tester", label,
                                         plan=sleep_plan(30, label, timeoutMs=90_000))
            for label, partition in (("low", 0), ("high", 5))}
    wait_for(lambda: len({s["label"] for s in tool_counts(stack.env)[0]}) == 2, timeout=60,
             what="both calls to start")
    stack.start_instance("tool-worker", "2")
    wait_for(lambda: assigned(stack, "tool-worker#2"), timeout=60, what="tool-worker#2 to join")
    assert not tool_counts(stack.env)[1], "the calls should still be running when the group rebalances"
    moved = "low" if 0 in assigned(stack, "tool-worker#2") else "high"
    stayed = "high" if moved == "low" else "low"

    for label, question in sent.items():
        stack.follow(question, timeout=120)
        assert answer_of(turn_events(stack, question))["outcome"] == "completed", label
    assert len(starts_of(stack, stayed)) == 1, "read again after the rebalance, it should join the running call"
    assert len(starts_of(stack, moved)) == 2, "its new owner runs it again"
    assert sorted(tool_counts(stack.env)[1].values()) == [1, 1]
    stack.assert_alive()
