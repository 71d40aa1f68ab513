"""A Handler that folds one topic's events into per-conversation state kept in a PartitionStore.

On assignment it recovers the gap between the store's applied offset L and the group's committed
offset C by replaying [L, C) through the fold alone: the outputs of that range are already in the
log. States live in the store; memory holds a bounded cache of them (AGENTLOG_STATE_CACHE
conversations per process, the least recently changed evicted after a commit, never one with
uncommitted changes), so a service's memory does not grow with the number of conversations.
L > C means the group's offsets were reset or expired; starting then would re-run committed work,
so it refuses with a clear error.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from confluent_kafka import Message, TopicPartition

from agentlog.config import positive_whole_number
from agentlog.errors import InvalidMessageError, StateOffsetAheadError
from agentlog.events.codec import INLINE_TURN_HEADER, IncomingHeaders, header
from agentlog.events.envelope import Envelope, parse_timestamp
from agentlog.kafka.eos import Handler, Output, TransactionalLoop
from agentlog.kafka.reader import read_range
from agentlog.state.store import PartitionStore

log = logging.getLogger(__name__)

S = TypeVar("S")


@dataclass(frozen=True)
class Decision(Generic[S]):
    state: S
    outputs: list[Output]


class Decider(Protocol[S]):
    """Pure decision logic: a fold over one conversation's events that may emit outputs. States are
    immutable: `decide` returns the very state it was given when the event changes nothing."""

    def initial(self, conversation_id: str) -> S: ...

    def decide(self, state: S, envelope: Envelope, now: datetime) -> Decision[S]: ...

    def dump(self, state: S) -> Any: ...

    def load(self, raw: Any) -> S: ...


DEFAULT_STATE_CACHE = 20_000


def state_cache_from_env() -> int:
    """How many conversations' states a stateful service keeps in memory (AGENTLOG_STATE_CACHE)."""
    return positive_whole_number(os.environ, "AGENTLOG_STATE_CACHE", DEFAULT_STATE_CACHE)


class FoldHandler(Handler, Generic[S]):
    """`subjects`, when given, are the only subjects the decider's fold reacts to: the loop and the
    recovery skip the others unread (the decider must leave its state alone for them).
    `inline_settled(state, turn_id)`, when given, says the decider has recorded that turn as run
    inline by the router, so the turn's later events (marked with its id) change nothing: they are
    skipped unread too."""

    def __init__(self, decider: Decider[S], store: PartitionStore, subjects: frozenset[str] | None = None,
                 cache_size: int | None = None, inline_settled: Callable[[S, str], bool] | None = None) -> None:
        self.decider = decider
        self.store = store
        self.subjects = subjects
        self.inline_settled = inline_settled
        self.cache_size = cache_size if cache_size is not None else state_cache_from_env()
        # partition -> conversation -> state, oldest change first (the eviction order)
        self.states: dict[int, dict[str, S]] = {}
        self.dirty: dict[int, set[str]] = {}
        self.loop: TransactionalLoop | None = None

    def bind(self, loop: TransactionalLoop) -> None:
        self.loop = loop

    def wants(self, subject: str) -> bool:
        return self.subjects is None or subject in self.subjects

    def skips(self, message: Message, headers: IncomingHeaders) -> bool:
        if self.inline_settled is None:
            return False
        turn_id = header(headers, INLINE_TURN_HEADER)
        key, partition = message.key(), message.partition()
        if turn_id is None or not isinstance(key, bytes) or partition is None:
            return False
        state = self.state(partition, key.decode(errors="replace"))
        return state is not None and self.inline_settled(state, turn_id)

    # -- recovery ------------------------------------------------------------------------------
    def on_assign(self, partitions: list[TopicPartition]) -> None:
        assert self.loop is not None
        committed = {(tp.topic, tp.partition): tp.offset for tp in self.loop.committed(partitions)}
        for tp in partitions:
            self.recover(tp.topic, tp.partition, committed.get((tp.topic, tp.partition), -1))

    def recover(self, topic: str, partition: int, committed: int) -> None:
        loop = self.loop
        assert loop is not None, "bind() comes before assignment"
        applied = self.store.applied_offset(topic, partition)
        self.states[partition] = {}
        self.dirty[partition] = set()
        if applied is not None and (committed < 0 or applied > committed):
            raise StateOffsetAheadError(
                f"local state of {topic}[{partition}] has applied up to offset {applied} but the group has "
                f"committed {committed}: the group's offsets were reset or expired. Delete {self.store.path} "
                "to rebuild this state from the log, or restore the group's offsets."
            )
        if committed < 0 or applied == committed:
            self.on_recovered(partition)
            return
        replayed = 0
        for message in read_range(loop.settings, topic, starts={partition: applied or 0},
                                  ends={partition: committed}, partitions=[partition]):
            if not self.reads(message):
                continue
            try:
                envelope = loop.codec.decode(message.value())
            except InvalidMessageError:
                continue  # it went to the dead-letter queue when it was first consumed
            if not self.wants(envelope.subject):
                continue
            self._apply(partition, envelope, parse_timestamp(envelope.timestamp))
            replayed += 1
        self.store.write({partition: self._dirty_states(partition)}, {(topic, partition): committed})
        self.dirty[partition] = set()
        log.info("recovered %s[%s]: replayed %d events from %s to %s", topic, partition, replayed,
                 applied if applied is not None else "the start", committed)
        self.on_recovered(partition)

    def on_recovered(self, partition: int) -> None:
        """Hook for subclasses (e.g. re-arm timers) once a partition's state is current."""

    def stored_states(self, partition: int) -> Iterator[tuple[str, S]]:
        """Every state of the partition as stored (current right after recovery), without caching them."""
        for key, raw in self.store.states(partition):
            yield key, self.decider.load(raw)

    def state(self, partition: int, key: str) -> S | None:
        """The conversation's state: from the cache, else from the store (then cached)."""
        states = self.states.setdefault(partition, {})
        current = states.get(key)
        if current is None:
            raw = self.store.get(partition, key)
            if raw is not None:
                current = states[key] = self.decider.load(raw)
        return current

    def on_revoke(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.states.pop(tp.partition, None)
            self.dirty.pop(tp.partition, None)

    # -- processing ----------------------------------------------------------------------------
    def _apply(self, partition: int, envelope: Envelope, now: datetime) -> list[Output]:
        key = envelope.conversation_id
        current = self.state(partition, key)
        before = current if current is not None else self.decider.initial(key)
        decision = self.decider.decide(before, envelope, now)
        if decision.state is not before:  # states are immutable: the same object means nothing to store
            states = self.states[partition]
            states.pop(key, None)  # re-inserted last: the most recently changed
            states[key] = decision.state
            self.dirty.setdefault(partition, set()).add(key)
            self.on_state_changed(partition, key, decision.state)
        return decision.outputs

    def on_state_changed(self, partition: int, key: str, state: S) -> None:
        """Hook for subclasses that index state (e.g. timers)."""

    def handle(self, envelope: Envelope, message: Message, now: datetime) -> list[Output]:
        partition = message.partition()
        assert partition is not None
        return self._apply(partition, envelope, now)

    def _dirty_states(self, partition: int) -> Mapping[str, Any]:
        states = self.states.get(partition, {})
        return {key: self.decider.dump(states[key]) for key in self.dirty.get(partition, ()) if key in states}

    def after_commit(self, offsets: dict[tuple[str, int], int]) -> None:
        changed = {p: self._dirty_states(p) for p in self.dirty if self.dirty[p]}
        self.store.write(changed, offsets)
        for p in self.dirty:
            self.dirty[p] = set()
        self._evict()

    def _evict(self) -> None:
        """Forget the least recently changed states beyond the cache size (all are in the store now)."""
        excess = sum(len(states) for states in self.states.values()) - self.cache_size
        for partition, states in self.states.items():
            if excess <= 0:
                return
            dirty = self.dirty.get(partition, set())
            for key in [k for k in itertools.islice(states, excess) if k not in dirty]:
                del states[key]
                excess -= 1

    def rewind(self) -> None:
        for partition, keys in self.dirty.items():
            states = self.states.get(partition, {})
            for key in keys:
                raw = self.store.get(partition, key)
                if raw is None:
                    states.pop(key, None)
                else:
                    states[key] = self.decider.load(raw)
                    self.on_state_changed(partition, key, states[key])
            keys.clear()
