"""Turns of local tools only, answered by the router in one transaction, on the real broker: the
same events as the orchestrated path, none sent by another service, and crashes of the router or
of the orchestrator (store deleted, rebuilt from the log) duplicate nothing."""

from __future__ import annotations

import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from agentlog.events.envelope import Envelope
from agentlog.kafka.reader import read_range
from agentlog.kafka.topics import CONVERSATION_EVENTS, SYNTHESIS_REQUESTS, TOOL_INVOCATION_REQUESTS
from agentlog.ops.replay import verify
from agentlog.services.metrics.lag import LagReader
from helpers import ALL_SERVICES, Stack, wait_for

INLINE_TYPES = ["UserQueryReceived", "PlanGenerated", "ToolInvocationRequested", "ToolInvocationResulted",
                "PlanStepCompleted", "PlanCompleted", "FinalAnswerSynthesized"]  # one calculateMath step
WORKER_PLAN = {"steps": [{"id": "effect", "tool": "recordEffect", "arguments": {"label": "via-worker"},
                          "dependsOn": []}], "finalAnswerSynthesisRequired": True}


@pytest.fixture
def stack(agentlog_env: dict[str, str]) -> Iterator[Stack]:
    with Stack(agentlog_env) as stack:
        yield stack


def turn_log(stack: Stack, sent: Envelope) -> list[Envelope]:
    return [e for e in stack.conversation_log(sent.conversation_id) if e.turn_id == sent.turn_id]


def commands_of(stack: Stack, topic: str, turn_id: str) -> list[dict[str, object]]:
    records = [orjson.loads(m.value() or b"{}") for m in read_range(stack.settings, stack.settings.topic(topic))]
    return [r for r in records if r.get("turnId") == turn_id]


def assert_one_inline_turn(stack: Stack, sent: Envelope) -> list[Envelope]:
    events = turn_log(stack, sent)
    assert [e.type for e in events] == INLINE_TYPES, [e.type for e in events]
    assert len({e.id for e in events}) == len(events) and verify(events) == []
    assert events[1].payload["inline"] is True
    assert {e.source for e in events[1:]} == {"router"}, "the orchestrator, aggregator and synthesis sent nothing"
    assert events[-1].payload["outcome"] == "completed" and "20" in events[-1].payload["message"]
    return events


def test_a_local_turn_is_answered_by_the_router_alone_and_the_next_turn_remembers_it(stack: Stack) -> None:
    stack.start()
    conversation = f"conv-{uuid.uuid4().hex[:8]}"
    sent, _ = stack.ask("What is (2 + 3) * 4?", conversation)
    assert_one_inline_turn(stack, sent)
    assert commands_of(stack, SYNTHESIS_REQUESTS, sent.turn_id) == []
    assert commands_of(stack, TOOL_INVOCATION_REQUESTS, sent.turn_id) == []
    # Memory is folded from the log: the router's own inline answer reaches the next question's plan.
    recalled = wait_for(lambda: (answer := stack.ask("What did I ask you before?", conversation)[1][-1])
                        and "(2 + 3) * 4" in answer.payload["message"] and answer, what="the recalled question")
    assert recalled.type == "FinalAnswerSynthesized"
    stack.assert_alive()


@pytest.mark.parametrize("point", ["router.before_commit:event.FinalAnswerSynthesized",
                                   "router.after_commit:event.FinalAnswerSynthesized"])
def test_a_router_killed_around_an_inline_commit_writes_the_turn_once(stack: Stack, point: str) -> None:
    stack.start(*(s for s in ALL_SERVICES if s != "router"))
    stack.start("router", pause_at=[point])
    sent = stack.client.question(f"conv-{uuid.uuid4().hex[:8]}", "tester", "What is (2 + 3) * 4?")
    wait_for(lambda: stack.pause_marker(point).exists(), timeout=60, what=f"the router to reach {point}")
    stack.kill("router")
    stack.start("router")
    stack.follow(sent)
    # A later turn of the same partition proves the router has read past the killed one.
    after, _ = stack.ask("What is 1 + 1?", sent.conversation_id)
    assert turn_log(stack, after)[-1].type == "FinalAnswerSynthesized"
    assert_one_inline_turn(stack, sent)
    stack.assert_alive()


def test_inline_turns_need_no_orchestrator_and_one_rebuilt_from_the_log_leaves_them_alone(stack: Stack) -> None:
    stack.start()
    conversation = f"conv-{uuid.uuid4().hex[:8]}"
    earlier, _ = stack.ask("What is (2 + 3) * 4?", conversation)
    # It sends nothing for an inline turn, so its offsets commit on their own a little later: wait for
    # that, so that the restarted orchestrator has a committed range to rebuild its state from.
    lag = LagReader(stack.settings, {"orchestrator": (CONVERSATION_EVENTS,)})
    try:
        # caught up: at most the commit marker after the last event is left
        wait_for(lambda: all(p.committed is not None and p.lag <= 1 for p in lag.read() if p.high > 0),
                 what="the orchestrator's offsets")
    finally:
        lag.close()
    stack.kill("orchestrator")
    store = Path(stack.env["AGENTLOG_VAR_DIR"]) / "state" / "orchestrator-0"
    assert store.exists()
    shutil.rmtree(store)
    inline, _ = stack.ask("What is (2 + 3) * 4?", conversation)  # answered while the orchestrator is down
    stack.start("orchestrator")
    # A turn the orchestrator must drive: answered only once it has replayed the inline one before it.
    driven, events = stack.ask("record an effect", conversation, plan=WORKER_PLAN, timeout=120)
    assert events[-1].payload["outcome"] == "completed"
    assert Counter(e.source for e in turn_log(stack, driven))["orchestrator"] >= 3
    assert "recovered" in stack.log("orchestrator")
    assert_one_inline_turn(stack, earlier)
    assert_one_inline_turn(stack, inline)
    stack.assert_alive()
