"""The aggregator's fold: gather each turn's question, plan and step outcomes from the event log,
and when the plan completes or fails, send one SynthesizeFinalAnswerRequested (not for a turn the
router ran inline: its answer is already in the log).

A turn whose request was sent is reduced to a marker, so a replayed or duplicated PlanCompleted
never asks for a second answer and finished turns cost little memory.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from agentlog.events.envelope import Envelope, caused_by, event_subjects
from agentlog.kafka.eos import Output
from agentlog.kafka.topics import SYNTHESIS_REQUESTS
from agentlog.state.fold import Decision

SOURCE = "aggregator"
FOLDED = ("UserQueryReceived", "PlanGenerated", "ToolInvocationResulted", "PlanStepCompleted")
ENDING = ("PlanCompleted", "PlanFailed")
# The only subjects `AggregatorDecider.decide` reacts to: the loop skips the rest unread.
SUBJECTS = event_subjects(FOLDED + ENDING)


@dataclass(frozen=True)
class AggregatorState:
    conversation_id: str
    turns: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"conversation_id": self.conversation_id, "turns": self.turns}


def _new_turn() -> dict[str, Any]:
    return {"userInput": "", "language": "en", "synthesisRequired": True, "steps": {}, "order": [],
            "done": False}


def _synthesis_request(turn: dict[str, Any], outcome: str, failure_reason: str | None) -> dict[str, Any]:
    steps = []
    for step_id in turn["order"]:
        step = turn["steps"][step_id]
        status = step.get("status")
        if status not in ("succeeded", "failed"):
            status = "skipped"
        steps.append({
            "stepId": step_id,
            "tool": step["tool"],
            "arguments": step["arguments"],
            "dependsOn": step["dependsOn"],
            "status": status,
            "output": step.get("output") if status == "succeeded" else None,
            "error": step.get("error") if status == "failed" else None,
        })
    return {"userInput": turn["userInput"], "language": turn["language"], "outcome": outcome,
            "failureReason": failure_reason, "synthesisRequired": turn["synthesisRequired"], "steps": steps}


def _fold_turn(turn: dict[str, Any], event: Envelope) -> dict[str, Any]:
    payload = event.payload
    if event.type == "UserQueryReceived":
        return {**turn, "userInput": payload["userInput"], "language": payload["language"]}
    if event.type == "PlanGenerated":
        plan = payload["plan"]
        steps = {s["id"]: {"tool": s["tool"], "arguments": s["arguments"], "dependsOn": s["dependsOn"]}
                 for s in plan["steps"]}
        return {**turn, "steps": steps, "order": [s["id"] for s in plan["steps"]],
                "synthesisRequired": plan["finalAnswerSynthesisRequired"]}
    step_id = payload.get("stepId")
    if step_id not in turn["steps"]:
        return turn
    step = dict(turn["steps"][step_id])
    if event.type == "ToolInvocationResulted" and payload["status"] == "succeeded":
        step["output"] = payload["output"]
    elif event.type == "PlanStepCompleted":
        step["status"] = payload["status"]
        step["error"] = payload["error"]
    else:
        return turn
    return {**turn, "steps": {**turn["steps"], step_id: step}}


class AggregatorDecider:
    def initial(self, conversation_id: str) -> AggregatorState:
        return AggregatorState(conversation_id=conversation_id, turns={})

    def dump(self, state: AggregatorState) -> Any:
        return state.to_json()

    def load(self, raw: Any) -> AggregatorState:
        return AggregatorState(conversation_id=raw["conversation_id"], turns=raw["turns"])

    @staticmethod
    def recorded_inline(state: AggregatorState, turn_id: str) -> bool:
        """The turn is done (for an inline turn: at its PlanGenerated), so its later events change nothing."""
        return bool(state.turns.get(turn_id, {}).get("done"))

    def decide(self, state: AggregatorState, event: Envelope, now: datetime) -> Decision[AggregatorState]:
        if event.kind != "event":
            return Decision(state, [])
        turn = state.turns.get(event.turn_id) or _new_turn()
        if turn["done"]:
            return Decision(state, [])
        if event.type == "PlanGenerated" and event.payload.get("inline"):
            # The router wrote this turn's answer with its plan (router/inline.py): nothing to request.
            return Decision(replace(state, turns={**state.turns, event.turn_id: {"done": True}}), [])
        if event.type in ENDING:
            outcome = "completed" if event.type == "PlanCompleted" else "failed"
            request = _synthesis_request(turn, outcome, event.payload.get("reason"))
            output = Output(SYNTHESIS_REQUESTS, caused_by(event, "command", "SynthesizeFinalAnswerRequested",
                                                          request, source=SOURCE, now=now))
            return Decision(replace(state, turns={**state.turns, event.turn_id: {"done": True}}), [output])
        if event.type in FOLDED:
            return Decision(replace(state, turns={**state.turns, event.turn_id: _fold_turn(turn, event)}), [])
        return Decision(state, [])
