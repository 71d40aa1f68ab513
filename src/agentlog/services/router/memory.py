"""Conversation memory: the earlier turns of a conversation, folded from its events, bounded.

The router folds three event types of `conversation-events` into one MemoryState per conversation:
UserQueryReceived (a question is asked), FinalAnswerSynthesized (it is answered: the pair joins the
window) and UserHistoryReset (everything before it is forgotten, including questions still waiting
for their answer). The window holds at most `MemoryLimits.turns` turns and `MemoryLimits.chars`
characters of questions and answers; the oldest turns go first, and a newest turn longer than the
whole budget is kept clipped.

What a turn is given is the window as the router has folded it when it plans the question: the
turns answered, and read back by the router, before this question was planned. A question sent
before the previous answer was read (the router consumes both topics, with no order between
them) does not see that answer. The memory a turn was given is recorded in its PlanGenerated
(`memory`), so replay never depends on that timing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from agentlog.errors import ConfigurationError
from agentlog.events.envelope import HISTORY_EVENT_TYPES, Envelope
from agentlog.events.plan import Plan
from agentlog.state.fold import Decision

RECALL_TOOL = "recallConversation"  # answers "what did I ask before?" from the window (tools/recall.py)
MEMORY_EVENTS = HISTORY_EVENT_TYPES
# Plan steps whose tool receives the window, and the argument that carries it.
MEMORY_ARGUMENTS = {"generalChat": "history", RECALL_TOOL: "turns"}
MAX_WAITING = 16  # questions awaiting an answer, per conversation
MAX_ANSWERED = 64  # ids of recently answered turns: a duplicate event is not remembered twice


@dataclass(frozen=True)
class RememberedTurn:
    turn_id: str
    question: str
    answer: str

    def to_json(self) -> dict[str, str]:
        return {"turnId": self.turn_id, "question": self.question, "answer": self.answer}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RememberedTurn:
        return cls(turn_id=str(raw["turnId"]), question=str(raw["question"]), answer=str(raw["answer"]))


@dataclass(frozen=True)
class MemoryLimits:
    """How much of a conversation a turn is given: at most `turns` turns and `chars` characters."""

    turns: int = 5
    chars: int = 4000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MemoryLimits:
        """AGENTLOG_MEMORY_TURNS and AGENTLOG_MEMORY_CHARS (0 turns switches memory off)."""
        source = os.environ if env is None else env
        limits = []
        for name, default in (("AGENTLOG_MEMORY_TURNS", cls.turns), ("AGENTLOG_MEMORY_CHARS", cls.chars)):
            raw = source.get(name, str(default))
            if not raw.strip().isdigit():
                raise ConfigurationError(f"{name} must be a whole number >= 0, got {raw!r}")
            limits.append(int(raw))
        return cls(turns=limits[0], chars=limits[1])


@dataclass(frozen=True)
class MemoryState:
    conversation_id: str
    window: tuple[RememberedTurn, ...] = ()
    waiting: tuple[tuple[str, str], ...] = ()  # (turn id, question) not answered yet, oldest first
    answered: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"conversationId": self.conversation_id, "window": [t.to_json() for t in self.window],
                "waiting": [list(w) for w in self.waiting], "answered": list(self.answered)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> MemoryState:
        return cls(conversation_id=raw["conversationId"],
                   window=tuple(RememberedTurn.from_json(t) for t in raw["window"]),
                   waiting=tuple((str(t), str(q)) for t, q in raw["waiting"]), answered=tuple(raw["answered"]))


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit - 1] + "…" if limit > 0 else ""


def bounded(window: Sequence[RememberedTurn], limits: MemoryLimits) -> tuple[RememberedTurn, ...]:
    """The newest turns of `window` that fit the limits, oldest first."""
    kept: list[RememberedTurn] = []
    budget = limits.chars
    for turn in reversed(window[-limits.turns:] if limits.turns > 0 else ()):
        size = len(turn.question) + len(turn.answer)
        if size <= budget:
            kept.append(turn)
            budget -= size
            continue
        if not kept:  # the newest turn alone is too long: keep it, clipped
            question = _clip(turn.question, budget // 2)
            kept.append(replace(turn, question=question, answer=_clip(turn.answer, budget - len(question))))
        break
    return tuple(reversed(kept))


def remember(state: MemoryState, event: Envelope, limits: MemoryLimits) -> MemoryState:
    """Fold one event of the conversation into its memory (pure; unrelated events change nothing)."""
    if event.kind != "event":
        return state
    turn_id = event.turn_id
    if event.type == "UserHistoryReset":
        return MemoryState(state.conversation_id, answered=state.answered)
    if event.type == "UserQueryReceived":
        if turn_id in state.answered or any(t == turn_id for t, _ in state.waiting):
            return state
        waiting = (*state.waiting, (turn_id, str(event.payload["userInput"])))
        return replace(state, waiting=waiting[-MAX_WAITING:])
    if event.type == "FinalAnswerSynthesized":
        question = dict(state.waiting).get(turn_id)
        if question is None:  # asked before a reset, or a duplicate answer
            return state
        turn = RememberedTurn(turn_id, question, str(event.payload["message"]))
        return MemoryState(state.conversation_id, window=bounded((*state.window, turn), limits),
                           waiting=tuple(w for w in state.waiting if w[0] != turn_id),
                           answered=(*state.answered, turn_id)[-MAX_ANSWERED:])
    return state


class MemoryDecider:
    """The memory fold as a Decider for FoldHandler: state only, it never emits anything."""

    def __init__(self, limits: MemoryLimits) -> None:
        self.limits = limits

    def initial(self, conversation_id: str) -> MemoryState:
        return MemoryState(conversation_id)

    def decide(self, state: MemoryState, envelope: Envelope, now: datetime) -> Decision[MemoryState]:
        return Decision(remember(state, envelope, self.limits), [])

    def dump(self, state: MemoryState) -> Any:
        return state.to_json()

    def load(self, raw: Any) -> MemoryState:
        return MemoryState.from_json(raw)


def with_memory(plan: Plan, memory: Sequence[RememberedTurn]) -> Plan:
    """The plan with the window as the memory argument of each step whose tool takes one (generalChat,
    recallConversation). The router's window replaces whatever a model wrote there: the turns a tool
    sees are the recorded ones, never invented."""
    turns = [{"question": t.question, "answer": t.answer} for t in memory]
    steps = []
    for step in plan.steps:
        name = MEMORY_ARGUMENTS.get(step.tool)
        if name is not None:
            arguments = {k: v for k, v in step.arguments.items() if k != name}
            step = replace(step, arguments={**arguments, name: turns} if turns else arguments)
        steps.append(step)
    return replace(plan, steps=tuple(steps))
