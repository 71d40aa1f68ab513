"""The history projection service (`agentlog service projection`) and its rebuild.

It only reads conversation-events, so it needs no Kafka transaction and no consumer group: it assigns
every partition itself, seeks to the offsets stored beside its rows, and per poll batch folds the
events and stores rows and offsets in one SQLite transaction (store.py). history.json is rewritten
after each batch that changed something, and once on start, so a crash between the SQLite commit
and the file write is repaired by the next start.

`rebuild` folds the whole log into a fresh database with the same code and swaps it in.
One instance per var/ directory; partitions added to the topic later are read after a restart.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from agentlog.config import Settings
from agentlog.errors import AgentlogError, InvalidMessageError
from agentlog.events.codec import Codec, subject_header
from agentlog.events.envelope import event_subjects
from agentlog.events.registry import SchemaRegistry
from agentlog.faults import pause_point
from agentlog.kafka.client import consumer_config, poll_batch
from agentlog.kafka.reader import read_batches
from agentlog.kafka.topics import CONVERSATION_EVENTS
from agentlog.services.projections.decode import HistoryDecoder
from agentlog.services.projections.history import RELEVANT_TYPES, HistoryEvent, HistoryState
from agentlog.services.projections.store import (
    DB_NAME,
    JSON_NAME,
    HistoryStore,
    projection_dir,
    swap_lock,
    sync_to_disk,
)

log = logging.getLogger(__name__)

BATCH_SIZE = 500
# Events whose subject header names anything else are skipped unread (most of a turn's events).
RELEVANT_SUBJECTS = event_subjects(RELEVANT_TYPES)
REBUILD_READ_BATCH = 10_000
# A rebuild holds its fold in memory (420 B per applied event in the bench, plus longer texts) and
# writes it this often.
REBUILD_FLUSH_EVENTS = 100_000
POLL_TIMEOUT_S = 0.25


@dataclass(frozen=True)
class Batch:
    """Decoded events, the next offset per (topic, partition) they take the projection to, and how many
    messages were skipped as invalid."""

    events: list[HistoryEvent]
    offsets: dict[tuple[str, int], int]
    invalid: int = 0


def decode_batch(decoder: HistoryDecoder, messages: Iterable[Message]) -> Batch:
    """Invalid and irrelevant messages are skipped (the services dead-letter the invalid ones) but
    still move the position."""
    events: list[HistoryEvent] = []
    offsets: dict[tuple[str, int], int] = {}
    invalid = 0
    for message in messages:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("projection consume error: %s", error)
            continue
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        assert topic is not None and partition is not None and offset is not None
        offsets[(topic, partition)] = offset + 1
        subject = subject_header(message.headers())
        if subject is not None and subject not in RELEVANT_SUBJECTS:
            continue
        try:
            events.append(decoder.decode(message.value()))
        except InvalidMessageError:
            invalid += 1
    return Batch(events, offsets, invalid)


class HistoryProjection:
    """The loop: poll a batch, fold it into SQLite with its offsets, export history.json."""

    def __init__(self, settings: Settings, codec: Codec) -> None:
        self.decoder = HistoryDecoder(codec, RELEVANT_SUBJECTS)
        self.directory = projection_dir(settings)
        self.topic = settings.topic(CONVERSATION_EVENTS)
        self.stopping = threading.Event()
        self.consumer = Consumer(consumer_config(settings, None, "agentlog-projection"))
        metadata = self.consumer.list_topics(self.topic, timeout=30).topics.get(self.topic)
        if metadata is None or metadata.error is not None:
            raise AgentlogError(f"topic {self.topic} does not exist: run `agentlog init`")
        self.partitions = sorted(metadata.partitions)
        self.store = HistoryStore(self.directory / DB_NAME)

    def _seek_to_stored(self) -> None:
        """Position every partition at the stored next offset (the beginning when there is none)."""
        stored = self.store.offsets(self.topic)
        self.consumer.assign([TopicPartition(self.topic, p, stored.get(p, OFFSET_BEGINNING)) for p in self.partitions])

    def run(self) -> None:
        with swap_lock(self.directory):
            self.store.export_json(self.directory / JSON_NAME)
        self._seek_to_stored()
        log.info("history projection started at %s", self.store.offsets(self.topic))
        try:
            while not self.stopping.is_set():
                self.step()
        finally:
            self.consumer.close()
            self.store.close()

    def step(self) -> None:
        batch = decode_batch(self.decoder, poll_batch(self.consumer, BATCH_SIZE, POLL_TIMEOUT_S))
        if not batch.offsets:
            return
        with swap_lock(self.directory):
            if self.store.replaced():
                # A rebuild swapped a new database in: this batch may be behind or ahead of it.
                log.info("history database was rebuilt: reopening it and seeking to its offsets")
                self.store.close()
                self.store = HistoryStore(self.directory / DB_NAME)
                self._seek_to_stored()
                self.store.export_json(self.directory / JSON_NAME)
                return
            changed = self.store.apply_batch(batch.events, batch.offsets)
            pause_point("projection.after_commit")
            if changed:
                self.store.export_json(self.directory / JSON_NAME)


@dataclass(frozen=True)
class RebuildReport:
    """Where a rebuild left the projection: next offset per partition, messages read, invalid ones skipped."""

    offsets: dict[int, int]
    messages: int
    invalid: int


def rebuild(settings: Settings, codec: Codec) -> RebuildReport:
    """Fold the whole log from offset 0 into a fresh database, then swap it in.

    A running projection notices the swap at its next batch and continues from the new offsets.
    """
    directory = projection_dir(settings)
    fresh = directory / f"{DB_NAME}.rebuild"
    for leftover in (fresh, fresh.with_name(f"{fresh.name}-journal")):
        leftover.unlink(missing_ok=True)
    store = HistoryStore(fresh, scratch=True)
    try:
        with gc_paused():
            report = _fold_log(settings, store, HistoryDecoder(codec, RELEVANT_SUBJECTS))
    finally:
        store.close()
    sync_to_disk(fresh)
    with swap_lock(directory):
        # Under the lock no writer is inside a transaction: a journal still there is a dead writer's,
        # and it must not be rolled back into the database that replaces its own.
        (directory / f"{DB_NAME}-journal").unlink(missing_ok=True)
        fresh.replace(directory / DB_NAME)
        sync_to_disk(directory)
        swapped = HistoryStore(directory / DB_NAME)
        try:
            swapped.export_json(directory / JSON_NAME)
        finally:
            swapped.close()
    if report.invalid:
        log.warning("rebuild skipped %d invalid messages (the services dead-lettered them)", report.invalid)
    return report


def _fold_log(settings: Settings, store: HistoryStore, decoder: HistoryDecoder) -> RebuildReport:
    """Fold every message of conversation-events into `store`.

    The fold stays in memory across read batches and is written every REBUILD_FLUSH_EVENTS applied
    events (and at the end), so each conversation is rewritten once per flush, not once per batch.
    """
    topic = settings.topic(CONVERSATION_EVENTS)
    state = HistoryState()
    offsets: dict[tuple[str, int], int] = {}
    messages = invalid = 0
    for chunk in read_batches(settings, topic, REBUILD_READ_BATCH):
        batch = decode_batch(decoder, chunk)
        messages, invalid = messages + len(chunk), invalid + batch.invalid
        store.fold_into(state, batch.events)
        offsets.update(batch.offsets)
        if len(state.applied) >= REBUILD_FLUSH_EVENTS:
            store.write(state, offsets)
            state = HistoryState()
    store.write(state, offsets)
    return RebuildReport(store.offsets(topic), messages, invalid)


@contextmanager
def gc_paused() -> Iterator[None]:
    """A rebuild allocates millions of small objects and no reference cycles: the cyclic collector
    would only rescan its growing fold again and again (a quarter of the time, measured)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def codec_from_registry(settings: Settings) -> Codec:
    """The validators the pipeline publishes; the packaged ones when the registry is still empty."""
    return Codec(SchemaRegistry(settings).read_all() or None)


def run_projection_service(settings: Settings) -> None:
    """Entry point of `agentlog service projection`."""
    projection = HistoryProjection(settings, codec_from_registry(settings))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: projection.stopping.set())
    projection.run()
