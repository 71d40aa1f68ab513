"""SIGKILL each service in the middle of a plan, restart it, and the turn still completes with
exactly one answer; a recorded step never starts again and every effect happens once.

The crash window is made deterministic with pause points: the service blocks at a named point
(e.g. right after committing the dispatch of the first step) and the test kills it there.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentlog.events.envelope import Envelope
from helpers import ALL_SERVICES, Stack, tool_counts, wait_for

pytestmark = pytest.mark.crash

TWO_STEP_PLAN = {
    "steps": [
        {"id": "first", "tool": "recordEffect", "arguments": {"label": "first", "delayMs": 300}, "dependsOn": []},
        {"id": "second", "tool": "recordEffect", "arguments": {"label": "{{first}}-then-second"},
         "dependsOn": ["first"]},
    ],
    "finalAnswerSynthesisRequired": True,
}


@pytest.fixture
def stack(agentlog_env: dict[str, str]) -> Iterator[Stack]:
    with Stack(agentlog_env) as stack:
        yield stack


def finish(stack: Stack, sent: Envelope, starts_per_label: dict[str, int]) -> list[Envelope]:
    """Wait for the answer, then check the turn's log: one answer, each effect once, and each step
    started as often as expected (twice only where the kill landed before its result was recorded)."""
    stack.follow(sent, timeout=120)
    events = [e for e in stack.conversation_log(sent.conversation_id) if e.turn_id == sent.turn_id]
    assert [e.type for e in events].count("FinalAnswerSynthesized") == 1
    answer = next(e for e in events if e.type == "FinalAnswerSynthesized")
    assert answer.payload["outcome"] == "completed", answer.payload
    starts, effects = tool_counts(stack.env)
    keys = {e.payload["idempotencyKey"] for e in events if e.type == "ToolInvocationRequested"}
    assert len(keys) == 2 and effects == dict.fromkeys(keys, 1), (effects, keys)
    counted: dict[str, int] = {}
    for start in starts:
        counted[start["label"]] = counted.get(start["label"], 0) + 1
    assert counted == starts_per_label
    return events


def pause_and_kill(stack: Stack, service: str, point: str, restart: bool = True) -> Envelope:
    others = [s for s in ALL_SERVICES if s != service]
    stack.start(*others)
    stack.start(service, pause_at=[point])
    sent = stack.client.question(f"crash-{service}", "tester", "two steps", plan=TWO_STEP_PLAN)
    wait_for(lambda: stack.pause_marker(point).exists(), timeout=60, what=f"{service} to reach {point}")
    stack.kill(service)
    if restart:
        stack.start(service)
    return sent


ONCE_EACH = {"first": 1, "first-then-second": 1}


@pytest.mark.parametrize("service, point, starts", [
    ("router", "router.before_commit", ONCE_EACH),
    ("orchestrator", "orchestrator.after_commit:command.ToolInvocationRequested", ONCE_EACH),
    ("orchestrator", "orchestrator.before_commit:event.PlanStepCompleted", ONCE_EACH),
    ("aggregator", "aggregator.before_commit:command.SynthesizeFinalAnswerRequested", ONCE_EACH),
    ("synthesis", "synthesis.before_commit", ONCE_EACH),
    # Killed after the effect but before its result was recorded: the call starts again, the effect does not.
    ("tool-worker", "tool-worker.before_commit:event.ToolInvocationResulted", {"first": 2, "first-then-second": 1}),
    ("tool-worker", "tool-worker.after_commit:event.ToolInvocationResulted", ONCE_EACH),
])
def test_killing_a_service_mid_plan_changes_nothing_but_latency(stack: Stack, service: str, point: str,
                                                                starts: dict[str, int]) -> None:
    sent = pause_and_kill(stack, service, point)
    events = finish(stack, sent, starts)
    assert [e.type for e in events].count("PlanGenerated") == 1
    stack.assert_alive()


def test_tool_worker_killed_during_the_call_reruns_it_with_one_effect(stack: Stack) -> None:
    stack.start("router", "orchestrator", "aggregator", "synthesis", "tool-worker")
    plan = {"steps": [{"id": "only", "tool": "recordEffect", "arguments": {"label": "once", "delayMs": 3000},
                       "dependsOn": []}, {"id": "after", "tool": "recordEffect", "arguments": {"label": "x"},
                                          "dependsOn": ["only"]}],
            "finalAnswerSynthesisRequired": True}
    sent = stack.client.question("crash-mid-call", "tester", "slow", plan=plan)
    wait_for(lambda: tool_counts(stack.env)[0], what="the tool call to start")
    stack.restart("tool-worker")
    finish(stack, sent, {"once": 2, "x": 1})  # killed during the call: it starts again, its effect does not


def test_orchestrator_recovers_from_the_log_with_its_local_store_deleted(stack: Stack) -> None:
    point = "orchestrator.after_commit:command.ToolInvocationRequested"
    sent = pause_and_kill(stack, "orchestrator", point, restart=False)
    store = Path(stack.env["AGENTLOG_VAR_DIR"]) / "state" / "orchestrator-0"
    assert store.exists()
    shutil.rmtree(store)
    stack.start("orchestrator")
    finish(stack, sent, ONCE_EACH)
    assert "recovered" in stack.log("orchestrator")
