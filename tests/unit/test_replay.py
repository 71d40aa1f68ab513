"""Time travel and invariant checks over a recorded conversation, without a broker."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from test_orchestrator_decide import DECIDER, T0, commands, plan_event, question, result

from agentlog.events.envelope import Envelope, caused_by
from agentlog.ops.replay import state_at, verify


def recorded_turn() -> list[Envelope]:
    """A complete two-step turn as the services would have logged it."""
    root = question()
    received = caused_by(root, "event", "UserQueryReceived", {"userInput": "q", "language": "en"}, source="router",
                         now=T0)
    template = plan_event([{"id": "a", "tool": "x", "arguments": {}},
                           {"id": "b", "tool": "x", "arguments": {"v": "{{a}}"}, "dependsOn": ["a"]}])
    plan = caused_by(root, "event", "PlanGenerated", template.payload, source="router", now=T0)
    log = [received, plan]
    state = DECIDER.initial("c1")
    pending = [plan]
    while pending:
        event = pending.pop(0)
        decision = DECIDER.decide(state, event, T0 + timedelta(milliseconds=len(log)))
        state = decision.state
        for output in decision.outputs:
            if output.envelope.kind == "event":
                log.append(output.envelope)
            if output.envelope.type == "PlanCompleted":
                log.append(caused_by(output.envelope, "event", "FinalAnswerSynthesized",
                                     {"message": "done", "outcome": "completed", "synthesizer": "t"},
                                     source="synthesis", now=T0))
        for command in commands(decision.outputs):
            answer = result(command)
            log.append(answer)
            pending.append(answer)
    return log


def test_a_recorded_turn_verifies_and_time_travel_shows_each_step_as_it_was() -> None:
    log = recorded_turn()
    assert verify(log) == []
    types = [e.type for e in log]
    first_request = types.index("ToolInvocationRequested")
    early = state_at(log, first_request).turns["t1"]
    assert (early.steps["a"].status, early.steps["b"].status) == ("running", "pending")
    done = state_at(log, len(log) - 1).turns["t1"]
    assert done.status == "completed" and done.steps["b"].status == "succeeded"
    with pytest.raises(ValueError, match="out of range"):
        state_at(log, len(log))


def test_verify_reports_two_answers_a_missing_result_and_an_effect_before_its_cause() -> None:
    log = recorded_turn()
    answer = next(e for e in log if e.type == "FinalAnswerSynthesized")
    second = replace(answer, id="00000000-0000-0000-0000-0000000000aa")
    assert any("2 final answers" in v.message for v in verify([*log, second]))
    without_result = [e for e in log if not (e.type == "ToolInvocationResulted" and e.payload["stepId"] == "b")]
    assert any("has 0 results" in v.message for v in verify(without_result))
    swapped = list(log)
    plan_at = next(i for i, e in enumerate(log) if e.type == "PlanGenerated")
    swapped[plan_at], swapped[plan_at + 1] = swapped[plan_at + 1], swapped[plan_at]
    assert any("comes before its cause" in v.message for v in verify(swapped))
    # A duplicate (same id) is not a second answer.
    assert verify([*log, answer]) == []
