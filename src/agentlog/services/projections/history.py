"""The history fold: per conversation, its question/answer turns since its last reset.

Pure: no I/O and no clock; the same events in the same order always give the same state, which is
what lets `agentlog projections rebuild` reproduce the incremental read model exactly. Only three
event types matter (UserQueryReceived, FinalAnswerSynthesized, UserHistoryReset); every one of them
is applied at most once by event id, because a duplicated UserHistoryReset landing after a new
question would otherwise wipe that question.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from agentlog.events.envelope import HISTORY_EVENT_TYPES

RELEVANT_TYPES = HISTORY_EVENT_TYPES


class HistoryEvent(Protocol):
    """What the fold reads of an event: an Envelope, or the lighter record a rebuild decodes (decode.py)."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def conversation_id(self) -> str: ...
    @property
    def turn_id(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def timestamp(self) -> str: ...
    @property
    def payload(self) -> Mapping[str, Any]: ...


def is_relevant(event: HistoryEvent) -> bool:
    """Commands on other topics share type names with events: only events of the store count."""
    return event.kind == "event" and event.type in RELEVANT_TYPES


@dataclass
class Turn:
    turn_id: str
    question: str
    asked_at: str
    answer: str | None = None
    outcome: str | None = None
    answered_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"turnId": self.turn_id, "question": self.question, "answer": self.answer, "outcome": self.outcome,
                "askedAt": self.asked_at, "answeredAt": self.answered_at}


@dataclass
class Conversation:
    """Its turns in order; `add` and `clear` keep them indexed by id, so a long conversation folds in
    linear time."""

    conversation_id: str
    user_id: str
    updated_at: str
    turns: list[Turn] = field(default_factory=list)
    _by_id: dict[str, Turn] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_id.update((t.turn_id, t) for t in self.turns)

    def turn(self, turn_id: str) -> Turn | None:
        return self._by_id.get(turn_id)

    def add(self, turn: Turn) -> None:
        self.turns.append(turn)
        self._by_id[turn.turn_id] = turn

    def clear(self) -> None:
        self.turns.clear()
        self._by_id.clear()

    def messages(self) -> list[dict[str, str]]:
        """The seed's history.json shape: user and assistant messages in order."""
        return messages((turn.question, turn.answer) for turn in self.turns)


def messages(turns: Iterable[tuple[str, str | None]]) -> list[dict[str, str]]:
    """(question, answer) pairs as the seed's user and assistant messages."""
    out: list[dict[str, str]] = []
    for question, answer in turns:
        out.append({"role": "user", "content": question})
        if answer is not None:
            out.append({"role": "assistant", "content": answer})
    return out


@dataclass
class HistoryState:
    """The conversations a fold knows and the ids of the events already applied to them.

    A store may load only the conversations a batch touches, with the ids of that batch it has
    already applied; `touched` and `applied` then say what it must write back.
    """

    conversations: dict[str, Conversation] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    touched: set[str] = field(default_factory=set)
    applied: list[str] = field(default_factory=list)

    def apply(self, event: HistoryEvent) -> bool:
        """Fold one event in; False when it is irrelevant or a duplicate."""
        if not is_relevant(event) or event.id in self.seen:
            return False
        self.seen.add(event.id)
        self.applied.append(event.id)
        conversation = self.conversations.get(event.conversation_id)
        if event.type == "FinalAnswerSynthesized":
            # An answer to a turn a reset removed (or never saw) stays out of the history.
            turn = conversation.turn(event.turn_id) if conversation is not None else None
            if conversation is None or turn is None:
                return True
            turn.answer, turn.outcome = str(event.payload["message"]), str(event.payload["outcome"])
            turn.answered_at = event.timestamp
        else:
            if conversation is None:
                conversation = Conversation(event.conversation_id, event.user_id, event.timestamp)
                self.conversations[event.conversation_id] = conversation
            if event.type == "UserHistoryReset":
                conversation.clear()
            elif conversation.turn(event.turn_id) is None:
                conversation.add(Turn(event.turn_id, str(event.payload["userInput"]), event.timestamp))
        conversation.user_id, conversation.updated_at = event.user_id, event.timestamp
        self.touched.add(event.conversation_id)
        return True


def fold(events: Iterable[HistoryEvent], state: HistoryState | None = None) -> HistoryState:
    state = state if state is not None else HistoryState()
    for event in events:
        state.apply(event)
    return state
