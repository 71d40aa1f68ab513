"""Cancel against the real broker: no new step is dispatched, a running step's late result is
recorded but not used, and the turn ends with an answer that says it was cancelled."""

from __future__ import annotations

from test_approval import EMAIL_PLAN, agentlog, answer_of, outbox, turn_events, wait_for_event

from helpers import Stack, tool_counts, wait_for, wait_settled

SLOW_PLAN = {
    "steps": [
        {"id": "slow", "tool": "recordEffect", "arguments": {"label": "slow", "delayMs": 15000}, "dependsOn": []},
        {"id": "next", "tool": "recordEffect", "arguments": {"label": "next"}, "dependsOn": ["slow"]},
    ],
    "finalAnswerSynthesisRequired": True,
}


def test_cancel_stops_a_running_turn_and_its_late_result_is_recorded_not_used(stack: Stack) -> None:
    sent = stack.client.question("conv-cancel", "tester", "slow work", plan=SLOW_PLAN)
    wait_for(lambda: tool_counts(stack.env)[0], timeout=120, what="the slow step to start")
    stack.client.control(sent.conversation_id, "dana", "cancel", turn_id=sent.turn_id, reason="too slow")
    cancelled = wait_for_event(stack, sent, "TurnCancelled")
    assert cancelled.payload == {"requestedBy": "dana", "reason": "too slow", "abandonedStepIds": ["slow", "next"]}
    answer = answer_of(stack, sent)
    assert answer.payload["outcome"] == "failed"
    assert answer.payload["message"].splitlines()[0] == \
        "I stopped working on this request: the turn was cancelled by dana: too slow."
    # The slow call finishes after the cancel: its result is in the log, after TurnCancelled, and unused.
    log = wait_settled(stack, [sent.turn_id], timeout=60, interval=0.2, on_poll=lambda: None)[sent.turn_id]
    order = [e.type for e in log]
    assert order.index("TurnCancelled") < order.index("ToolInvocationResulted")
    assert [s["label"] for s in tool_counts(stack.env)[0]] == ["slow"]  # `next` was never dispatched
    assert order.count("PlanCompleted") == 0 and order.count("FinalAnswerSynthesized") == 1
    replay = agentlog(stack, "replay", sent.conversation_id, "--verify")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "cancel requested by dana" in replay.stdout


def test_cancel_while_waiting_for_approval_sends_nothing(stack: Stack) -> None:
    sent = stack.client.question("conv-cancel-approval", "tester", "email the total", plan=EMAIL_PLAN)
    wait_for_event(stack, sent, "ApprovalRequested")
    done = agentlog(stack, "cancel", sent.turn_id, "--conversation", sent.conversation_id, "--user", "tester",
                    "--wait", "120")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cancelled by tester; abandoned steps: mail" in done.stdout
    answer = answer_of(stack, sent)
    assert "cancelled by tester" in answer.payload["message"]
    cancelled = next(e for e in turn_events(stack, sent) if e.type == "TurnCancelled")
    assert cancelled.payload["abandonedStepIds"] == ["mail"]
    stack.client.control(sent.conversation_id, "tester", "approve", turn_id=sent.turn_id)  # too late: ignored
    wait_for(lambda: "ignored approve of turn" in stack.log("orchestrator"), what="the late approve to be ignored")
    assert outbox(stack) == []
    assert not any(e.type == "ApprovalDecided" for e in turn_events(stack, sent))
