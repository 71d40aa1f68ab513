"""Replay a conversation from the log: read it, reconstruct the orchestrator's state at any event
(time travel, with the orchestrator's own fold), and verify its invariants.

The fold runs without local tools: the state at event N is what the recorded events up to N say,
never a recomputation. Likewise the tools that waited for approval are those the log shows asking.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from agentlog.config import Settings
from agentlog.errors import InvalidMessageError
from agentlog.events.codec import Codec
from agentlog.events.envelope import Envelope, derive_id
from agentlog.kafka.reader import read_range
from agentlog.kafka.topics import CONVERSATION_EVENTS
from agentlog.services.orchestrator.decide import OrchestratorDecider
from agentlog.services.orchestrator.state import ConversationState


def conversation_events(settings: Settings, codec: Codec, conversation_id: str) -> list[Envelope]:
    """The conversation's events in log order, as stored (duplicates included)."""
    events = []
    for message in read_range(settings, settings.topic(CONVERSATION_EVENTS)):
        if message.key() != conversation_id.encode():
            continue
        try:
            events.append(codec.decode(message.value()))
        except InvalidMessageError:
            continue
    return events


def state_at(events: Sequence[Envelope], index: int) -> ConversationState:
    """The orchestrator's state of the conversation after folding events[0..index]."""
    if not events:
        raise ValueError("the conversation has no events")
    if not 0 <= index < len(events):
        raise ValueError(f"event index {index} is out of range 0..{len(events) - 1}")
    # Which tools wait for approval is read from the log; each request's recorded expiresAt sets its deadline.
    decider = OrchestratorDecider(approvals=dict.fromkeys(
        {str(e.payload["tool"]) for e in events if e.type == "ApprovalRequested"}, 0))
    state = decider.initial(events[0].conversation_id)
    for event in events[: index + 1]:
        if event.type == "PlanGenerated" and event.payload.get("inline"):
            # the router ran it (router/inline.py): fold its recorded steps as the orchestrator would have
            event = replace(event, payload={k: v for k, v in event.payload.items() if k != "inline"})
        state = decider.decide(state, event, datetime.fromisoformat(event.timestamp)).state
    return state


@dataclass(frozen=True)
class Violation:
    turn_id: str
    message: str


def control_summary(event: Envelope) -> str | None:
    """One line on an approval or cancellation event: who asked or decided what, and why."""
    payload = event.payload
    why = f": {payload['reason']}" if payload.get("reason") else ""
    if event.type == "ApprovalRequested":
        return f"{payload['tool']} {payload['stepId']} waits for approval until {payload['expiresAt']}"
    if event.type == "ApprovalDecided":
        return f"{payload['stepId']} {payload['decision']} by {payload['decidedBy']}{why}"
    if event.type == "UserControlReceived":
        return f"{payload['command']} requested by {event.user_id}{why}"
    if event.type == "TurnCancelled":
        abandoned = ", ".join(payload["abandonedStepIds"]) or "none"
        return f"cancelled by {payload['requestedBy']}{why}; abandoned steps: {abandoned}"
    return None


def _derived_command_ids(event: Envelope) -> Iterable[str]:
    """Ids of commands recorded by this event: commands live on other topics, their ids are derived."""
    if event.type == "ToolInvocationRequested":
        yield derive_id(event.conversation_id, event.turn_id, event.payload["stepId"], event.payload["attempt"],
                        "command", "ToolInvocationRequested")
    if event.type in ("PlanCompleted", "PlanFailed"):
        yield derive_id(event.conversation_id, event.turn_id, "command", "SynthesizeFinalAnswerRequested")


def verify(events: Sequence[Envelope]) -> list[Violation]:
    """Check each turn: causal order, one answer, every request answered by exactly one result."""
    violations: list[Violation] = []
    turns: dict[str, list[Envelope]] = {}
    for event in events:
        turns.setdefault(event.turn_id, []).append(event)
    for turn_id, turn in turns.items():
        unique = list({e.id: e for e in turn}.values())
        known: set[str] = set()
        for event in turn:
            # Roots: events recording a command, whose id is on a command topic, not in this log.
            if (event.type in ("UserQueryReceived", "UserHistoryReset", "UserControlReceived")
                    and event.source == "router") or \
                    event.type == "DeadLetterRedriven":
                known.add(event.causation_id or "")
            if event.causation_id not in known:
                violations.append(Violation(turn_id, f"{event.type} {event.id} comes before its cause "
                                                     f"{event.causation_id}"))
            known.add(event.id)
            known.update(_derived_command_ids(event))
        types = Counter(e.type for e in unique)
        if types["UserHistoryReset"] or set(types) == {"UserControlReceived"}:
            continue  # a reset, or controls for a turn this log never started, have no answer
        if types["FinalAnswerSynthesized"] != 1:
            violations.append(Violation(turn_id, f"{types['FinalAnswerSynthesized']} final answers (expected 1)"))
        if types["PlanGenerated"] + types["PlanFailed"] == 0:
            violations.append(Violation(turn_id, "no plan and no planning failure"))
        requested = {e.payload["invocationId"] for e in unique if e.type == "ToolInvocationRequested"}
        results = Counter(e.payload["invocationId"] for e in unique if e.type == "ToolInvocationResulted")
        for invocation in sorted(requested):
            if results[invocation] != 1:
                violations.append(Violation(turn_id, f"invocation {invocation} has {results[invocation]} results"))
        for invocation in sorted(set(results) - requested):
            violations.append(Violation(turn_id, f"result for invocation {invocation} that was never requested"))
    return violations


def memory_lines(events: Sequence[Envelope]) -> list[str]:
    """What each planned turn was given as memory (its PlanGenerated's `memory`), one block per turn:
    replay shows the recorded window, it never folds it again."""
    lines: list[str] = []
    shown: set[str] = set()
    for event in events:
        if event.type != "PlanGenerated" or "memory" not in event.payload or event.turn_id in shown:
            continue
        shown.add(event.turn_id)
        memory = event.payload["memory"]
        lines.append(f"turn {event.turn_id[:8]}: {len(memory)} earlier turn(s)" if memory
                     else f"turn {event.turn_id[:8]}: no earlier turns")
        for turn in memory:
            answer = " ".join(turn["answer"].split())
            lines.append(f"  {turn['turnId'][:8]}  Q: {turn['question'][:80]}  A: {answer[:80]}")
    return lines
