"""Approval and cancel as pure decisions: approval waits as state, time enters as a timer event,
and a user's control is recorded by the router and applied (or ignored) by the orchestrator."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest
from test_orchestrator_decide import T0, commands, plan_event, result, types

from agentlog.events.codec import Codec
from agentlog.events.envelope import Envelope, command, timestamp_ms
from agentlog.kafka.eos import Output
from agentlog.ops.replay import control_summary, state_at, verify
from agentlog.services.orchestrator.decide import OrchestratorDecider, pending_timers, timer_event
from agentlog.services.orchestrator.service import approval_tools
from agentlog.services.orchestrator.state import ConversationState
from agentlog.services.router.planner import OfflinePlanner, PlanningQuery
from agentlog.services.router.service import user_control
from agentlog.services.synthesis.compose import compose_answer
from agentlog.tools.registry import ToolOutput, ToolRegistry, tool

APPROVALS = {"sendEmail": 60_000}
DECIDER = OrchestratorDecider(approvals=APPROVALS)
EMAIL = {"id": "mail", "tool": "sendEmail", "arguments": {"to": "dana@example.com", "subject": "hi", "body": "{{calc}}"},
         "dependsOn": ["calc"]}
CALC = {"id": "calc", "tool": "calculateMath", "arguments": {"expression": "2+3"}}
AFTER = {"id": "after", "tool": "calculateMath", "arguments": {"expression": "1+1"}, "dependsOn": ["mail"]}


def run(state: ConversationState, event: Envelope, now: datetime = T0) -> tuple[ConversationState, list[Output]]:
    decision = DECIDER.decide(state, event, now)
    return decision.state, decision.outputs


def control(name: str, user: str = "alice", reason: str | None = None, at: datetime = T0,
            step: str | None = None) -> Envelope:
    """The router's UserControlReceived for a user's command on turn t1."""
    payload = {"command": name, **({"reason": reason} if reason else {}), **({"stepId": step} if step else {})}
    sent = command("UserControl", conversation_id="c1", turn_id="t1", user_id=user, payload=payload,
                   source="test", now=at)
    return user_control(sent, at).envelope


def of_type(outputs: list[Output], type_: str) -> list[Envelope]:
    return [o.envelope for o in outputs if o.envelope.type == type_]


def waiting_for_approval() -> tuple[ConversationState, list[Output]]:
    """calc done; mail asks for approval (its ApprovalRequested read back, as the service would)."""
    state, out = run(DECIDER.initial("c1"), plan_event([CALC, EMAIL, AFTER]))
    state, asked = run(state, result(commands(out)[0], value=5))
    state, _ = run(state, of_type(asked, "ApprovalRequested")[0])
    return state, asked


def test_an_approval_tool_asks_first_and_dispatches_nothing() -> None:
    state, asked = waiting_for_approval()
    assert types(asked) == ["PlanStepCompleted", "ApprovalRequested"]
    assert commands(asked) == []
    request = of_type(asked, "ApprovalRequested")[0].payload
    assert request["arguments"]["body"] == "5"  # resolved, so the person sees what will be sent
    assert timestamp_ms(request["expiresAt"]) == int((T0 + timedelta(seconds=60)).timestamp() * 1000)
    assert state.turns["t1"].steps["mail"].status == "awaiting_approval"
    (timer,) = pending_timers(state)
    assert (timer.purpose, timer.step_id, timer.due_ms) == ("approval", "mail", timestamp_ms(request["expiresAt"]))


def test_approve_records_who_and_runs_the_step() -> None:
    state, _ = waiting_for_approval()
    state, out = run(state, control("approve", reason="looks right"))
    decided = of_type(out, "ApprovalDecided")[0].payload
    assert decided == {"stepId": "mail", "decision": "approved", "decidedBy": "alice", "reason": "looks right"}
    (sent,) = commands(out)
    assert sent.envelope.payload["tool"] == "sendEmail" and sent.envelope.payload["arguments"]["body"] == "5"
    state, out = run(state, result(sent, value="dana@example.com"))
    state, out = run(state, result(commands(out)[0], value=2))
    assert types(out)[-1] == "PlanCompleted"


def test_deny_fails_the_step_skips_its_dependants_and_says_why() -> None:
    state, _ = waiting_for_approval()
    state, out = run(state, control("deny", user="bob", reason="wrong person"))
    assert commands(out) == []
    assert of_type(out, "ApprovalDecided")[0].payload["decision"] == "denied"
    completed = {e.payload["stepId"]: e.payload for e in of_type(out, "PlanStepCompleted")}
    assert completed["mail"]["status"] == "failed" and completed["mail"]["error"]["type"] == "ApprovalDenied"
    assert completed["after"]["status"] == "skipped"
    failed = of_type(out, "PlanFailed")[0].payload
    assert failed["reason"] == "step mail (sendEmail) was not run: approval was denied by bob: wrong person"
    assert state.turns["t1"].status == "failed"


def test_the_deadline_expires_the_request_through_a_timer_event() -> None:
    state, _ = waiting_for_approval()
    (timer,) = pending_timers(state)
    fired = timer_event(state, timer, T0 + timedelta(seconds=61))
    state, out = run(state, fired, T0 + timedelta(seconds=61))
    decided = of_type(out, "ApprovalDecided")[0].payload
    assert (decided["decision"], decided["decidedBy"]) == ("expired", "deadline")
    assert "nobody approved it before" in of_type(out, "PlanFailed")[0].payload["reason"]
    # A late approve changes nothing: the turn is over.
    state, late = run(state, control("approve"))
    assert late == [] and state.turns["t1"].status == "failed"


def test_a_control_for_a_turn_that_is_not_waiting_is_ignored_with_a_logged_reason(
        caplog: pytest.LogCaptureFixture) -> None:
    state, _ = run(DECIDER.initial("c1"), plan_event([CALC, EMAIL]))
    with caplog.at_level(logging.INFO, logger="agentlog.services.orchestrator.decide"):
        state, ignored = run(state, control("approve"))
        assert ignored == [] and state.turns["t1"].steps["calc"].status == "running"
        _, unknown = run(DECIDER.initial("c1"), control("deny"))
    assert unknown == []
    assert "no step of the turn is waiting for approval" in caplog.text
    assert "no plan of this turn is known" in caplog.text


def test_with_two_steps_waiting_a_decision_applies_only_to_the_step_it_names(
        caplog: pytest.LogCaptureFixture) -> None:
    second = {**EMAIL, "id": "mail2", "arguments": {**EMAIL["arguments"], "to": "eve@example.com"}}
    state, out = run(DECIDER.initial("c1"), plan_event([CALC, EMAIL, second]))
    state, asked = run(state, result(commands(out)[0], value=5))
    for request in of_type(asked, "ApprovalRequested"):
        state, _ = run(state, request)
    assert {s.id for s in state.turns["t1"].steps.values() if s.status == "awaiting_approval"} == {"mail", "mail2"}
    with caplog.at_level(logging.INFO, logger="agentlog.services.orchestrator.decide"):
        state, ignored = run(state, control("approve"))  # which one? the user saw one card: not guessed
    assert ignored == [] and "2 steps are waiting for approval" in caplog.text
    state, out = run(state, control("approve", step="mail2"))
    (decided,) = of_type(out, "ApprovalDecided")
    assert decided.payload["stepId"] == "mail2" and decided.payload["decision"] == "approved"
    (sent,) = commands(out)
    assert sent.envelope.payload["arguments"]["to"] == "eve@example.com"
    assert state.turns["t1"].steps["mail"].status == "awaiting_approval"
    state, out = run(state, control("deny", step="mail"))
    assert of_type(out, "ApprovalDecided")[0].payload["decision"] == "denied"
    Codec().encode(control("approve", step="mail"))  # stepId is part of the recorded event


def test_cancel_abandons_unfinished_steps_and_ignores_late_results() -> None:
    state, out = run(DECIDER.initial("c1"), plan_event([
        {"id": "slow", "tool": "recordEffect", "arguments": {"label": "x"}},
        {"id": "next", "tool": "recordEffect", "arguments": {"label": "y"}, "dependsOn": ["slow"]}]))
    (running,) = commands(out)
    state, out = run(state, control("cancel", reason="changed my mind"))
    assert commands(out) == []
    cancelled = of_type(out, "TurnCancelled")[0].payload
    assert cancelled == {"requestedBy": "alice", "reason": "changed my mind", "abandonedStepIds": ["slow", "next"]}
    assert {e.payload["error"]["type"] for e in of_type(out, "PlanStepCompleted")} == {"TurnCancelled"}
    assert of_type(out, "PlanFailed")[0].payload["reason"] == "the turn was cancelled by alice: changed my mind"
    assert state.turns["t1"].status == "cancelled" and pending_timers(state) == []
    state, late = run(state, result(running, value="x"))
    assert late == [] and state.turns["t1"].steps["slow"].status == "failed"


def test_state_with_approval_fields_round_trips_through_json() -> None:
    state, _ = waiting_for_approval()
    assert ConversationState.from_json(state.to_json()) == state


def test_each_control_command_is_its_own_event_and_reset_is_unchanged() -> None:
    first, second = control("approve"), control("approve")
    assert first.type == "UserControlReceived" and first.id != second.id
    sent = command("UserControl", conversation_id="c1", turn_id="t9", user_id="u", payload={"command": "reset"},
                   source="test", now=T0)
    reset = user_control(sent, T0).envelope
    assert (reset.type, dict(reset.payload)) == ("UserHistoryReset", {"command": "reset"})
    Codec().encode(first)  # valid against the packaged schemas


@pytest.mark.parametrize("language, denied, cancelled", [
    ("en", "I did not run step mail (sendEmail): approval was denied by bob.",
     "I stopped working on this request: the turn was cancelled by alice."),
    ("he", "לא הרצתי את שלב mail (sendEmail) כי הוא לא אושר: approval was denied by bob.",
     "הפסקתי לעבוד על הבקשה כי היא בוטלה: the turn was cancelled by alice."),
])
def test_answers_say_denied_or_cancelled(language: str, denied: str, cancelled: str) -> None:
    def request(error_type: str, message: str) -> dict[str, object]:
        step = {"stepId": "mail", "tool": "sendEmail", "arguments": {}, "dependsOn": [], "status": "failed",
                "output": None, "error": {"type": error_type, "message": message, "retryable": False}}
        return {"userInput": "q", "language": language, "outcome": "failed", "failureReason": "r",
                "synthesisRequired": True, "steps": [step]}

    assert denied in compose_answer(request("ApprovalDenied", "approval was denied by bob"))
    answer = compose_answer(request("TurnCancelled", "the turn was cancelled by alice"))
    assert answer.splitlines()[0] == cancelled


def test_replay_rebuilds_the_waiting_state_and_shows_who_decided() -> None:
    state, out = run(DECIDER.initial("c1"), plan_event([CALC, EMAIL]))
    log = [plan_event([CALC, EMAIL]), *[o.envelope for o in out if o.envelope.kind == "event"]]
    state, asked = run(state, result(commands(out)[0], value=5))
    log += [result(commands(out)[0], value=5), *of_type(asked, "ApprovalRequested")]
    waiting = state_at(log, len(log) - 1).turns["t1"].steps["mail"]
    assert waiting.status == "awaiting_approval"
    assert waiting.deadline_ms == timestamp_ms(of_type(asked, "ApprovalRequested")[0].payload["expiresAt"])
    deny = control("deny", user="bob")
    state, out = run(state, deny)
    assert control_summary(of_type(out, "ApprovalDecided")[0]) == "mail denied by bob"
    assert control_summary(deny) == "deny requested by bob"
    assert verify([control("cancel")]) == []  # a control for a turn this log never started needs no answer


def test_approval_timeouts_come_from_the_tool_then_the_environment() -> None:
    registry = ToolRegistry()

    @tool("askFirst", "needs approval", registry, approval=True)
    def ask_first() -> ToolOutput:
        return ToolOutput(value=1, text="1")

    @tool("quick", "approval within 5 s", registry, approval=True, approval_timeout_s=5)
    def quick() -> ToolOutput:
        return ToolOutput(value=1, text="1")

    @tool("free", "no approval", registry)
    def free() -> ToolOutput:
        return ToolOutput(value=1, text="1")

    assert approval_tools(registry, {}) == {"askFirst": 600_000, "quick": 5_000}
    assert approval_tools(registry, {"AGENTLOG_APPROVAL_TIMEOUT_S": "2.5"}) == {"askFirst": 2_500, "quick": 5_000}


def test_the_offline_planner_routes_an_email_request_to_send_email() -> None:
    query = PlanningQuery(user_input="Send an email to dana@example.com saying the meeting moved to 3pm",
                          conversation_id="c1", turn_id="t1", language="en")
    (step,) = OfflinePlanner().plan(query).steps
    assert (step.tool, dict(step.arguments)) == ("sendEmail", {
        "to": "dana@example.com", "subject": "the meeting moved to 3pm", "body": "the meeting moved to 3pm"})
