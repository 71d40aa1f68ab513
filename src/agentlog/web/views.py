"""The gateway's read side: the conversation list, a conversation's events, its question/answer history.

Each answer sits behind one small function or class so that a projection service can replace it
without touching the HTTP layer: `ConversationIndex.summaries` (today folded from the gateway's own
reader of the log) and `history_of` (today computed from the conversation's events; tomorrow read
from the history projection in `agentlog.services.projections`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from agentlog.config import Settings
from agentlog.errors import InvalidMessageError
from agentlog.events.codec import Codec
from agentlog.events.envelope import Envelope
from agentlog.kafka.reader import read_range
from agentlog.kafka.topics import CONVERSATION_EVENTS
from agentlog.web.partitioner import partition_for


@dataclass
class ConversationSummary:
    conversation_id: str
    user_id: str
    first_question: str | None
    turns: int
    last_activity: str

    def to_json(self) -> dict[str, Any]:
        return {"conversationId": self.conversation_id, "userId": self.user_id, "firstQuestion": self.first_question,
                "turns": self.turns, "lastActivity": self.last_activity}


class ConversationIndex:
    """Conversations seen in the log, folded event by event (fed by the gateway's LiveLog thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, ConversationSummary] = {}

    def apply(self, event: Envelope) -> None:
        with self._lock:
            summary = self._by_id.get(event.conversation_id)
            if summary is None:
                summary = ConversationSummary(event.conversation_id, event.user_id, None, 0, event.timestamp)
                self._by_id[event.conversation_id] = summary
            summary.last_activity = max(summary.last_activity, event.timestamp)
            if event.type == "UserQueryReceived":
                if summary.turns == 0:
                    summary.user_id = event.user_id  # the owner: who asked first
                summary.turns += 1
                if summary.first_question is None:
                    summary.first_question = str(event.payload.get("userInput", ""))

    def owner_of(self, conversation_id: str) -> str | None:
        """The user of the conversation's first question, None while the index knows of none."""
        with self._lock:
            summary = self._by_id.get(conversation_id)
            return summary.user_id if summary is not None and summary.turns else None

    def summaries(self, user_id: str | None = None, limit: int = 100) -> list[ConversationSummary]:
        """Most recently active first; only `user_id`'s when given."""
        with self._lock:
            chosen = [s for s in self._by_id.values() if user_id is None or s.user_id == user_id]
        chosen.sort(key=lambda s: s.last_activity, reverse=True)
        return chosen[:limit]


class EventStore:
    """Reads one conversation from conversation-events: only the partition its key is placed on."""

    def __init__(self, settings: Settings, codec: Codec, partitions: int) -> None:
        self.settings = settings
        self.codec = codec
        self.partitions = partitions

    def events_of(self, conversation_id: str) -> list[Envelope]:
        """The conversation's events in log order, duplicates (same id) dropped. Blocking."""
        topic = self.settings.topic(CONVERSATION_EVENTS)
        key = conversation_id.encode()
        mine = partition_for(key, self.partitions)
        skip = {p: 0 for p in range(self.partitions) if p != mine}  # an end of 0 reads nothing there
        events: list[Envelope] = []
        seen: set[str] = set()
        for message in read_range(self.settings, topic, ends=skip):
            if message.key() != key:
                continue
            try:
                event = self.codec.decode(message.value())
            except InvalidMessageError:
                continue
            if event.id not in seen:
                seen.add(event.id)
                events.append(event)
        return events


def history_from_events(events: Iterable[Envelope]) -> list[dict[str, Any]]:
    """Question/answer pairs since the last UserHistoryReset, in the order the questions came."""
    turns: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.type == "UserHistoryReset":
            turns.clear()
        elif event.type == "UserQueryReceived":
            turns[event.turn_id] = {"turnId": event.turn_id, "question": event.payload.get("userInput"),
                                    "askedAt": event.timestamp, "answer": None, "outcome": None, "answeredAt": None}
        elif event.type == "FinalAnswerSynthesized" and event.turn_id in turns:
            turns[event.turn_id].update(answer=event.payload["message"], outcome=event.payload["outcome"],
                                        answeredAt=event.timestamp)
    return list(turns.values())


def history_of(store: EventStore, conversation_id: str) -> list[dict[str, Any]] | None:
    """The conversation's history, or None when the log holds nothing of it. Blocking.

    Read from the history projection's SQLite read model when the projection service runs here;
    otherwise folded from the conversation's events (same shape), so the gateway works alone too.
    """
    from agentlog.services.projections.store import HistoryReadModel, history_db_path

    projected = history_db_path(store.settings)
    if projected.exists():
        turns = HistoryReadModel(projected).history(conversation_id)
        if turns is not None:
            return turns
    events: Sequence[Envelope] = store.events_of(conversation_id)
    return history_from_events(events) if events else None
