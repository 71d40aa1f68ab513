"""A question goes in, a plan runs through Kafka, one answer comes out: services as OS processes."""

from __future__ import annotations

import pytest

from agentlog.events.envelope import Envelope, derive_id
from helpers import Stack, tool_counts, wait_for

TURN_ORDER = ["UserQueryReceived", "PlanGenerated", "ToolInvocationRequested", "ToolInvocationResulted",
              "PlanStepCompleted", "PlanCompleted", "FinalAnswerSynthesized"]


def answer_of(events: list[Envelope]) -> Envelope:
    answers = [e for e in events if e.type == "FinalAnswerSynthesized"]
    assert len(answers) == 1, [e.type for e in events]
    return answers[0]


def assert_causal(events: list[Envelope], root: Envelope) -> None:
    """Every event is caused by the command or by an event that precedes it in the log."""
    known = {root.id}
    for event in events:
        assert event.causation_id in known or event.type == "StepTimerFired", (event.type, event.causation_id)
        assert event.correlation_id == root.turn_id
        known.add(event.id)
        # Commands live on their own topics; their ids are derived from the event that records them.
        if event.type == "ToolInvocationRequested":
            known.add(derive_id(root.conversation_id, root.turn_id, event.payload["stepId"], event.payload["attempt"],
                                "command", "ToolInvocationRequested"))
        if event.type in ("PlanCompleted", "PlanFailed"):
            known.add(derive_id(root.conversation_id, root.turn_id, "command", "SynthesizeFinalAnswerRequested"))
    known_commands = {e.payload.get("invocationId") for e in events if e.type == "ToolInvocationRequested"}
    results = [e for e in events if e.type == "ToolInvocationResulted"]
    assert all(r.payload["invocationId"] in known_commands for r in results)


def turn_events(stack: Stack, sent: Envelope) -> list[Envelope]:
    return [e for e in stack.conversation_log(sent.conversation_id) if e.turn_id == sent.turn_id]


def test_percentage_question_gets_one_correct_answer_in_causal_order(stack: Stack) -> None:
    sent, live = stack.ask("What is 12.5% of 240?", "conv-pct")
    answer = answer_of(live)
    assert "30" in answer.payload["message"] and answer.payload["outcome"] == "completed"
    logged = turn_events(stack, sent)
    assert [e.type for e in logged] == TURN_ORDER
    assert_causal(logged, sent)
    result = next(e for e in logged if e.type == "ToolInvocationResulted")
    assert result.payload["output"]["value"] == 30


def test_two_independent_steps_run_in_parallel_and_both_results_reach_the_answer(stack: Stack) -> None:
    sent, _ = stack.ask("What is 2+3 and what is 10*4?", "conv-two")
    logged = turn_events(stack, sent)
    types = [e.type for e in logged]
    requested = [i for i, t in enumerate(types) if t == "ToolInvocationRequested"]
    resulted = [i for i, t in enumerate(types) if t == "ToolInvocationResulted"]
    assert len(requested) == 2 and len(resulted) == 2
    assert max(requested) < min(resulted), "both steps were sent before either finished"
    message = answer_of(logged).payload["message"]
    assert "= 5" in message and "= 40" in message
    assert_causal(logged, sent)


def test_two_turns_of_one_conversation_each_get_their_own_plan_and_answer(stack: Stack) -> None:
    first, _ = stack.ask("What is 6*7?", "conv-turns")
    second, _ = stack.ask("What is 100-1?", "conv-turns")
    log = stack.conversation_log("conv-turns")
    for sent, expected in ((first, "42"), (second, "99")):
        events = [e for e in log if e.turn_id == sent.turn_id]
        assert [e.type for e in events].count("PlanGenerated") == 1
        assert expected in answer_of(events).payload["message"]


def test_a_dependent_step_computes_with_the_first_steps_result(stack: Stack) -> None:
    plan = {"steps": [{"id": "s1", "tool": "calculateMath", "arguments": {"expression": "2*3"}, "dependsOn": []},
                      {"id": "s2", "tool": "calculateMath", "arguments": {"expression": "{{s1}} + 10"},
                       "dependsOn": ["s1"]}],
            "finalAnswerSynthesisRequired": True}
    _, live = stack.ask("six plus ten", "conv-dep", plan=plan)
    results = {e.payload["stepId"]: e.payload for e in live if e.type == "ToolInvocationResulted"}
    assert results["s2"]["output"]["value"] == 16
    requested = next(e for e in live if e.type == "ToolInvocationRequested" and e.payload["stepId"] == "s2")
    assert requested.payload["arguments"] == {"expression": "6 + 10"}
    assert "16" in answer_of(live).payload["message"]


def test_a_failing_tool_ends_in_an_answer_that_says_what_failed(stack: Stack) -> None:
    _, live = stack.ask("What is 1/0?", "conv-fail")
    answer = answer_of(live)
    assert answer.payload["outcome"] == "failed"
    assert "division by zero" in answer.payload["message"]
    failed = next(e for e in live if e.type == "PlanFailed")
    assert failed.payload["stage"] == "execution" and failed.payload["failedStepIds"] == ["s1"]


def test_a_timing_out_tool_is_retried_with_one_effect_and_a_clear_answer(stack: Stack) -> None:
    plan = {"steps": [{"id": "slow", "tool": "recordEffect", "arguments": {"label": "slow", "delayMs": 2500},
                       "dependsOn": [], "timeoutMs": 400, "maxAttempts": 2}],
            "finalAnswerSynthesisRequired": True}
    sent, live = stack.ask("run the slow tool", "conv-timeout", plan=plan, timeout=90)
    types = [e.type for e in live]
    assert types.count("StepTimerFired") >= 2  # a timeout, a retry, a second timeout
    answer = answer_of(live)
    assert answer.payload["outcome"] == "failed"
    assert "within 400 ms" in answer.payload["message"]
    key = next(e for e in live if e.type == "ToolInvocationRequested").payload["idempotencyKey"]
    # Both attempts run to their end after the turn failed; then count what they did.
    wait_for(lambda: len([e for e in turn_events(stack, sent) if e.type == "ToolInvocationResulted"]) == 2,
             timeout=30, what="both attempts to finish")
    starts, effects = tool_counts(stack.env)
    assert sorted(s["attempt"] for s in starts) == [1, 2]  # both attempts started; in one batch, in either order
    assert effects == {key: 1}, "however many attempts start, the effect happens once"


def test_a_slow_first_attempt_that_finishes_late_still_completes_the_step_once(stack: Stack) -> None:
    plan = {"steps": [{"id": "late", "tool": "recordEffect",
                       "arguments": {"label": "late", "delayMs": 1500, "slowAttempts": 1},
                       "dependsOn": [], "timeoutMs": 500, "maxAttempts": 10}],  # budget far beyond the slow start
            "finalAnswerSynthesisRequired": True}
    sent, live = stack.ask("late tool", "conv-late", plan=plan, timeout=90)
    assert answer_of(live).payload["outcome"] == "completed"
    key = next(e for e in live if e.type == "ToolInvocationRequested").payload["idempotencyKey"]
    starts = wait_for(lambda: [s for s in tool_counts(stack.env)[0] if s["attempt"] >= 2], what="a second start")
    assert {s["idempotencyKey"] for s in starts} == {key}
    assert tool_counts(stack.env)[1] == {key: 1}
    completed = [e for e in turn_events(stack, sent) if e.type == "PlanStepCompleted"]
    assert len(completed) == 1


@pytest.mark.parametrize("question, plan, expected", [
    ("   ", None, "could not plan"),
    ("cyclic", {"steps": [{"id": "a", "tool": "calculateMath", "arguments": {"expression": "{{b}}"},
                           "dependsOn": ["b"]},
                          {"id": "b", "tool": "calculateMath", "arguments": {"expression": "1"}, "dependsOn": []}],
                "finalAnswerSynthesisRequired": True}, "not an earlier step"),
])
def test_a_failing_planner_ends_in_an_answer_that_says_so(stack: Stack, question: str, plan: dict[str, object] | None,
                                                          expected: str) -> None:
    _, live = stack.ask(question, "conv-planfail", plan=plan)
    failed = next(e for e in live if e.type == "PlanFailed")
    assert failed.payload["stage"] == "planning"
    answer = answer_of(live)
    assert answer.payload["outcome"] == "failed"
    assert expected in answer.payload["message"]
