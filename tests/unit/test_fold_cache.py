"""FoldHandler keeps a bounded cache of states over its store: evicted states come back from the
store unchanged, states with uncommitted changes are never evicted, and a rewind restores the
committed ones."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agentlog.errors import ConfigurationError
from agentlog.events.envelope import Envelope, caused_by, command
from agentlog.state.fold import Decision, FoldHandler, state_cache_from_env
from agentlog.state.store import PartitionStore

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Count:
    conversation_id: str
    seen: int = 0


class Counter:
    """Counts each conversation's events; a `noop` event changes nothing (same state back)."""

    def initial(self, conversation_id: str) -> Count:
        return Count(conversation_id)

    def decide(self, state: Count, envelope: Envelope, now: datetime) -> Decision[Count]:
        if envelope.payload.get("noop"):
            return Decision(state, [])
        return Decision(Count(state.conversation_id, state.seen + 1), [])

    def dump(self, state: Count) -> Any:
        return {"conversation_id": state.conversation_id, "seen": state.seen}

    def load(self, raw: Any) -> Count:
        return Count(raw["conversation_id"], raw["seen"])


def event(conversation_id: str, noop: bool = False) -> Envelope:
    root = command("UserQueryReceived", conversation_id=conversation_id, turn_id="t", user_id="u",
                   payload={"userInput": "q"}, source="test", now=NOW)
    return caused_by(root, "event", "Counted", {"noop": noop}, source="test", now=NOW)


def cached(handler: FoldHandler[Count]) -> set[str]:
    return {key for states in handler.states.values() for key in states}


def test_states_beyond_the_cache_are_evicted_after_a_commit_and_come_back_from_the_store(tmp_path: Path) -> None:
    handler = FoldHandler(Counter(), PartitionStore(tmp_path / "store"), cache_size=2)
    for name in ("a", "b", "c", "a", "d"):
        handler._apply(0, event(name), NOW)
    assert cached(handler) == {"a", "b", "c", "d"}, "nothing is evicted before its changes are stored"
    handler.after_commit({("t", 0): 5})
    assert cached(handler) == {"a", "d"}, "the two most recently changed stay"
    assert handler.state(0, "b") == Count("b", 1) and handler.state(0, "a") == Count("a", 2)
    handler._apply(0, event("c"), NOW)
    assert handler.state(0, "c") == Count("c", 2), "an evicted state folds on from its stored value"
    assert handler.state(0, "never") is None


def test_an_event_that_changes_nothing_stores_nothing(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "store")
    handler = FoldHandler(Counter(), store, cache_size=10)
    handler._apply(0, event("quiet", noop=True), NOW)
    handler.after_commit({("t", 0): 1})
    assert store.get(0, "quiet") is None and cached(handler) == set()


def test_uncommitted_states_are_never_evicted_and_a_rewind_restores_the_committed_ones(tmp_path: Path) -> None:
    handler = FoldHandler(Counter(), PartitionStore(tmp_path / "store"), cache_size=1)
    handler._apply(0, event("a"), NOW)
    handler.after_commit({("t", 0): 1})
    for name in ("b", "c", "a"):
        handler._apply(0, event(name), NOW)
    handler._evict()
    assert cached(handler) >= {"a", "b", "c"}
    handler.rewind()
    assert handler.state(0, "a") == Count("a", 1) and handler.state(0, "b") is None


@pytest.mark.parametrize("raw", ["0", "-3", "many", "0.5"])
def test_a_bad_cache_size_is_refused_by_name(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTLOG_STATE_CACHE", raw)
    with pytest.raises(ConfigurationError, match="AGENTLOG_STATE_CACHE"):
        state_cache_from_env()
