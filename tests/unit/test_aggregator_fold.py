"""The aggregator's fold: one synthesis request per turn, built from the log alone."""

from __future__ import annotations

from datetime import UTC, datetime

from agentlog.events.codec import Codec
from agentlog.events.envelope import Envelope, caused_by, command
from agentlog.services.aggregator.fold import AggregatorDecider

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DECIDER = AggregatorDecider()
ROOT = command("UserQueryReceived", conversation_id="c1", turn_id="t1", user_id="u1",
               payload={"userInput": "What is 2+3 and 1/0?"}, source="test", now=T0)


def event(type_: str, payload: dict[str, object], *parts: object) -> Envelope:
    return caused_by(ROOT, "event", type_, payload, source="test", now=T0, id_parts=parts)


def history() -> list[Envelope]:
    steps = [{"id": "a", "tool": "calculateMath", "arguments": {"expression": "2+3"}, "dependsOn": []},
             {"id": "b", "tool": "calculateMath", "arguments": {"expression": "1/0"}, "dependsOn": []},
             {"id": "c", "tool": "calculateMath", "arguments": {"expression": "{{b}}*2"}, "dependsOn": ["b"]}]
    common = {"idempotencyKey": "00000000-0000-0000-0000-000000000001", "attempt": 1, "tool": "calculateMath",
              "durationMs": 1.0, "worker": "w"}
    return [
        event("UserQueryReceived", {"userInput": "What is 2+3 and 1/0?", "language": "en"}),
        event("PlanGenerated", {"plan": {"steps": steps, "finalAnswerSynthesisRequired": True},
                                "planner": "t", "language": "en"}),
        event("ToolInvocationResulted", {**common, "invocationId": "00000000-0000-0000-0000-00000000000a",
                                         "stepId": "a", "status": "succeeded", "error": None,
                                         "output": {"value": 5, "text": "5", "data": {}}}, "a"),
        event("PlanStepCompleted", {"stepId": "a", "tool": "calculateMath", "status": "succeeded", "attempts": 1,
                                    "error": None}, "a"),
        event("PlanStepCompleted", {"stepId": "b", "tool": "calculateMath", "status": "failed", "attempts": 1,
                                    "error": {"type": "MathError", "message": "division by zero",
                                              "retryable": False}}, "b"),
        event("PlanStepCompleted", {"stepId": "c", "tool": "calculateMath", "status": "skipped", "attempts": 0,
                                    "error": None}, "c"),
        event("PlanFailed", {"stage": "execution", "reason": "step b failed", "failedStepIds": ["b"],
                             "succeededStepIds": ["a"]}),
    ]


def test_one_valid_synthesis_request_per_turn_with_every_step_outcome() -> None:
    state = DECIDER.initial("c1")
    outputs = []
    for item in history():
        decision = DECIDER.decide(state, item, T0)
        state, outputs = decision.state, outputs + decision.outputs
    (request,) = outputs
    Codec().encode(request.envelope)  # the request satisfies its schema
    payload = request.envelope.payload
    assert payload["outcome"] == "failed" and payload["failureReason"] == "step b failed"
    assert [(s["stepId"], s["status"]) for s in payload["steps"]] == [("a", "succeeded"), ("b", "failed"),
                                                                      ("c", "skipped")]
    assert payload["steps"][0]["output"]["value"] == 5
    assert payload["steps"][1]["error"]["message"] == "division by zero"
    # A redelivered PlanFailed, or any later event of the turn, asks for nothing more.
    assert DECIDER.decide(state, history()[-1], T0).outputs == []
    assert DECIDER.load(DECIDER.dump(state)) == state
