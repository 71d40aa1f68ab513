"""The orchestrator's decision logic as pure functions: no broker, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from agentlog.events.envelope import Envelope, caused_by, command
from agentlog.kafka.eos import Output
from agentlog.services.orchestrator.decide import (
    OrchestratorDecider,
    backoff_ms,
    idempotency_key,
    invocation_id,
    pending_timers,
    timer_event,
)
from agentlog.services.orchestrator.state import ConversationState

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DECIDER = OrchestratorDecider()


def question() -> Envelope:
    return command("UserQueryReceived", conversation_id="c1", turn_id="t1", user_id="u1",
                   payload={"userInput": "q"}, source="test", now=T0)


def plan_event(steps: list[dict[str, Any]]) -> Envelope:
    for step in steps:
        step.setdefault("dependsOn", [])
    payload = {"plan": {"steps": steps, "finalAnswerSynthesisRequired": True}, "planner": "test", "language": "en"}
    return caused_by(question(), "event", "PlanGenerated", payload, source="router", now=T0)


def result(request: Output, status: str = "succeeded", value: Any = 1, retryable: bool = False,
           at: datetime = T0) -> Envelope:
    p = request.envelope.payload
    payload = {k: p[k] for k in ("invocationId", "idempotencyKey", "stepId", "attempt", "tool")}
    payload.update({"status": status, "durationMs": 1.0, "worker": "w",
                    "output": {"value": value, "text": str(value), "data": {}} if status == "succeeded" else None,
                    "error": None if status == "succeeded" else {"type": "E", "message": "boom", "retryable": retryable}})
    return caused_by(request.envelope, "event", "ToolInvocationResulted", payload, source="tool-worker", now=at,
                     id_parts=(p["invocationId"],))


def run(state: ConversationState, event: Envelope, now: datetime = T0) -> tuple[ConversationState, list[Output]]:
    decision = DECIDER.decide(state, event, now)
    return decision.state, decision.outputs


def commands(outputs: list[Output]) -> list[Output]:
    return [o for o in outputs if o.envelope.kind == "command"]


def types(outputs: list[Output]) -> list[str]:
    return [o.envelope.type for o in outputs if o.envelope.kind == "event"]


def test_independent_steps_are_dispatched_together_and_complete_the_plan() -> None:
    state = DECIDER.initial("c1")
    state, out = run(state, plan_event([{"id": "a", "tool": "calculateMath", "arguments": {"expression": "2+3"}},
                                        {"id": "b", "tool": "calculateMath", "arguments": {"expression": "10*4"}}]))
    sent = commands(out)
    assert [c.envelope.payload["stepId"] for c in sent] == ["a", "b"]
    assert types(out) == ["ToolInvocationRequested", "ToolInvocationRequested"]
    state, out = run(state, result(sent[0], value=5))
    assert types(out) == ["PlanStepCompleted"]
    state, out = run(state, result(sent[1], value=40))
    assert types(out) == ["PlanStepCompleted", "PlanCompleted"]
    assert state.turns["t1"].status == "completed"


def test_dependent_step_receives_the_referenced_value() -> None:
    state = DECIDER.initial("c1")
    state, out = run(state, plan_event([
        {"id": "s1", "tool": "getExchangeRate", "arguments": {"from": "USD", "to": "ILS"}},
        {"id": "s2", "tool": "calculateMath", "arguments": {"expression": "500 - 2 * 40 * {{s1}}", "raw": {"$ref": "s1"}},
         "dependsOn": ["s1"]}]))
    assert [c.envelope.payload["stepId"] for c in commands(out)] == ["s1"]
    state, out = run(state, result(commands(out)[0], value=3.7))
    (second,) = commands(out)
    assert second.envelope.payload["arguments"] == {"expression": "500 - 2 * 40 * 3.7", "raw": 3.7}


def test_ids_are_deterministic_and_the_idempotency_key_is_shared_by_attempts() -> None:
    assert invocation_id("c", "t", "s", 1) == invocation_id("c", "t", "s", 1)
    assert invocation_id("c", "t", "s", 1) != invocation_id("c", "t", "s", 2)
    assert idempotency_key("c", "t", "s") == idempotency_key("c", "t", "s")
    event = plan_event([{"id": "a", "tool": "x", "arguments": {}}])
    _, first = run(DECIDER.initial("c1"), event)
    _, again = run(DECIDER.initial("c1"), event)
    assert [o.envelope.id for o in first] == [o.envelope.id for o in again]
    assert len({o.envelope.id for o in first}) == len(first)


def test_retryable_failure_backs_off_then_retries_with_the_same_idempotency_key() -> None:
    state, out = run(DECIDER.initial("c1"), plan_event([{"id": "a", "tool": "x", "arguments": {}, "maxAttempts": 2}]))
    first = commands(out)[0]
    failed_at = T0 + timedelta(seconds=1)
    state, out = run(state, result(first, status="failed", retryable=True, at=failed_at))
    assert out == []
    (timer,) = pending_timers(state)
    assert timer.purpose == "retry" and timer.due_ms == int(failed_at.timestamp() * 1000) + backoff_ms(1)
    state, out = run(state, timer_event(state, timer, failed_at))
    retry = commands(out)[0]
    assert retry.envelope.payload["attempt"] == 2
    assert retry.envelope.payload["idempotencyKey"] == first.envelope.payload["idempotencyKey"]
    assert retry.envelope.payload["invocationId"] != first.envelope.payload["invocationId"]
    state, out = run(state, result(retry, status="failed", retryable=True))
    assert types(out) == ["PlanStepCompleted", "PlanFailed"]
    failed = out[-1].envelope.payload
    assert failed["failedStepIds"] == ["a"] and "2 attempt(s)" in failed["reason"]


def test_timeout_retries_and_a_late_success_of_the_first_attempt_completes_the_step() -> None:
    state, out = run(DECIDER.initial("c1"), plan_event([{"id": "a", "tool": "x", "arguments": {}, "timeoutMs": 100}]))
    first = commands(out)[0]
    (timer,) = pending_timers(state)
    assert timer.purpose == "timeout" and timer.due_ms == int(T0.timestamp() * 1000) + 100
    state, out = run(state, timer_event(state, timer, T0))
    assert out == [] and state.turns["t1"].steps["a"].status == "backoff"
    (retry_timer,) = pending_timers(state)
    state, out = run(state, timer_event(state, retry_timer, T0))
    assert commands(out)[0].envelope.payload["attempt"] == 2
    state, out = run(state, result(first, value="late"))
    assert types(out) == ["PlanStepCompleted", "PlanCompleted"]
    assert pending_timers(state) == []


def test_stale_failure_and_duplicates_change_nothing() -> None:
    state, out = run(DECIDER.initial("c1"), plan_event([{"id": "a", "tool": "x", "arguments": {}}]))
    first = commands(out)[0]
    done = result(first, value=1)
    state, out = run(state, done)
    assert types(out) == ["PlanStepCompleted", "PlanCompleted"]
    again, out = run(state, done)
    assert out == [] and again.turns == state.turns
    _, out = run(state, plan_event([{"id": "a", "tool": "x", "arguments": {}}]))
    assert out == []


def test_failed_step_skips_its_dependants_but_independent_steps_finish() -> None:
    state, out = run(DECIDER.initial("c1"), plan_event([
        {"id": "a", "tool": "x", "arguments": {}},
        {"id": "b", "tool": "x", "arguments": {"v": {"$ref": "a"}}, "dependsOn": ["a"]},
        {"id": "c", "tool": "x", "arguments": {}}]))
    a, c = commands(out)
    state, out = run(state, result(a, status="failed"))
    assert types(out) == ["PlanStepCompleted", "PlanStepCompleted"]
    assert [o.envelope.payload["status"] for o in out] == ["failed", "skipped"]
    state, out = run(state, result(c, value=2))
    assert types(out) == ["PlanStepCompleted", "PlanFailed"]
    assert out[-1].envelope.payload["succeededStepIds"] == ["c"]


def test_empty_plan_completes_at_once() -> None:
    _, out = run(DECIDER.initial("c1"), plan_event([]))
    assert types(out) == ["PlanCompleted"]


def test_replay_of_the_log_reaches_the_live_state() -> None:
    """The fold over the produced events (without re-running decisions' outputs) gives the same state."""
    log: list[Envelope] = []
    state = DECIDER.initial("c1")
    pending = [plan_event([{"id": "a", "tool": "x", "arguments": {}},
                           {"id": "b", "tool": "x", "arguments": {"v": "{{a}}"}, "dependsOn": ["a"]}])]
    while pending:
        event = pending.pop(0)
        log.append(event)
        state, out = run(state, event, now=T0 + timedelta(milliseconds=len(log)))
        log.extend(o.envelope for o in out if o.envelope.kind == "event")
        pending.extend(result(o) for o in commands(out))
    replayed = DECIDER.initial("c1")
    for event in log:
        replayed, _ = run(replayed, event, now=datetime.fromisoformat(event.timestamp))
    assert replayed.turns == state.turns
    assert DECIDER.load(DECIDER.dump(state)) == state


def test_local_tools_run_inside_the_decision_and_chain_without_a_round_trip() -> None:
    import agentlog.tools.math  # noqa: F401  (registers calculateMath)
    from agentlog.tools.registry import DEFAULT_REGISTRY

    spec = DEFAULT_REGISTRY.get("calculateMath")
    assert spec is not None and spec.local
    local = OrchestratorDecider({"calculateMath": spec})
    decision = local.decide(local.initial("c1"), plan_event([
        {"id": "a", "tool": "calculateMath", "arguments": {"expression": "2*3"}},
        {"id": "b", "tool": "calculateMath", "arguments": {"expression": "{{a}} + 10"}, "dependsOn": ["a"]},
        {"id": "c", "tool": "calculateMath", "arguments": {"expression": "1/0"}}]), T0)
    assert commands(decision.outputs) == [], "local steps send no command to the tool workers"
    assert types(decision.outputs) == [
        "ToolInvocationRequested", "ToolInvocationRequested",  # a and c are ready together
        "ToolInvocationResulted", "PlanStepCompleted", "ToolInvocationResulted", "PlanStepCompleted",
        "ToolInvocationRequested", "ToolInvocationResulted", "PlanStepCompleted",  # b, released by a
        "PlanFailed"]
    results = {o.envelope.payload["stepId"]: o.envelope.payload for o in decision.outputs
               if o.envelope.type == "ToolInvocationResulted"}
    assert results["b"]["output"]["value"] == 16
    assert results["c"]["error"]["type"] == "MathError"
    # Replaying the recorded events through the fold reaches the same steps.
    replayed = local.initial("c1")
    for event in [plan_event([
        {"id": "a", "tool": "calculateMath", "arguments": {"expression": "2*3"}},
        {"id": "b", "tool": "calculateMath", "arguments": {"expression": "{{a}} + 10"}, "dependsOn": ["a"]},
        {"id": "c", "tool": "calculateMath", "arguments": {"expression": "1/0"}}])] + [
            o.envelope for o in decision.outputs]:
        replayed = local.decide(replayed, event, datetime.fromisoformat(event.timestamp)).state
    assert {k: (s.status, s.value) for k, s in replayed.turns["t1"].steps.items()} == {
        k: (s.status, s.value) for k, s in decision.state.turns["t1"].steps.items()}
