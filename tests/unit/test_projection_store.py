"""The SQLite store gives the same read model however the log is cut into batches and flushes.

The live service folds each poll batch in its own transaction; a rebuild keeps one fold in memory and
writes it every so many events (`fold_into` + `write`). Duplicates and resets crossing those cuts must
come out the same as the pure fold of the whole log.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from agentlog.events.envelope import Envelope, derive_id
from agentlog.services.projections.history import HistoryState, fold
from agentlog.services.projections.store import HistoryReadModel, HistoryStore

TOPIC = "conversation-events"


def event(type_: str, conversation: str, turn: str, second: int, **payload: str) -> Envelope:
    return Envelope(id=derive_id(conversation, turn, type_), kind="event", type=type_, conversation_id=conversation,
                    turn_id=turn, user_id="u1", timestamp=f"2025-01-01T00:00:{second:02d}.000Z", source="test",
                    payload=payload)


def log() -> list[Envelope]:
    """Two conversations, answers, a reset, and duplicates of each kind landing later."""
    q1, a1 = event("UserQueryReceived", "a", "t1", 1, userInput="one"), event(
        "FinalAnswerSynthesized", "a", "t1", 2, message="1", outcome="completed")
    q2 = event("UserQueryReceived", "b", "t2", 3, userInput="keep")
    reset = event("UserHistoryReset", "a", "r1", 4, command="reset")
    q3, a3 = event("UserQueryReceived", "a", "t3", 5, userInput="two"), event(
        "FinalAnswerSynthesized", "a", "t3", 6, message="2", outcome="completed")
    return [q1, a1, q2, q1, reset, q3, a1, reset, a3, q2, q3]


def read_model(path: Path) -> tuple[object, ...]:
    read = HistoryReadModel(path)
    conversations = read.conversations()
    return (conversations, {c["conversationId"]: read.history(c["conversationId"]) for c in conversations},
            read.offsets(TOPIC))


@pytest.mark.parametrize("flush_every", [1, 2, 3, 100])
def test_a_rebuild_flushing_every_n_events_equals_live_batches_and_the_pure_fold(tmp_path: Path,
                                                                                flush_every: int) -> None:
    events = log()
    live = HistoryStore(tmp_path / "live.sqlite")
    for offset, e in enumerate(events):
        live.apply_batch([e], {(TOPIC, 0): offset + 1})
    live.export_json(tmp_path / "live.json")
    live.close()

    rebuilt = HistoryStore(tmp_path / "rebuilt.sqlite", scratch=True)
    state = HistoryState()
    for offset, e in enumerate(events):
        rebuilt.fold_into(state, [e])
        if len(state.applied) >= flush_every:
            rebuilt.write(state, {(TOPIC, 0): offset + 1})
            state = HistoryState()
    rebuilt.write(state, {(TOPIC, 0): len(events)})
    rebuilt.export_json(tmp_path / "rebuilt.json")
    rebuilt.close()

    assert read_model(tmp_path / "rebuilt.sqlite") == read_model(tmp_path / "live.sqlite")
    exported = orjson.loads((tmp_path / "rebuilt.json").read_bytes())
    assert exported == orjson.loads((tmp_path / "live.json").read_bytes())
    assert exported == {cid: c.messages() for cid, c in fold(events).conversations.items()} == {
        "a": [{"role": "user", "content": "two"}, {"role": "assistant", "content": "2"}],
        "b": [{"role": "user", "content": "keep"}]}


def test_an_emptied_conversation_is_exported_with_no_messages(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite")
    store.apply_batch([event("UserQueryReceived", "a", "t1", 1, userInput="one"),
                       event("UserHistoryReset", "a", "r1", 2, command="reset")], {(TOPIC, 0): 2})
    store.export_json(tmp_path / "h.json")
    store.close()
    assert orjson.loads((tmp_path / "h.json").read_bytes()) == {"a": []}
    assert HistoryReadModel(tmp_path / "h.sqlite").history("a") == []
