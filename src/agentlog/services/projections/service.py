"""The history projection service (`agentlog service projection`) and its rebuild.

It only reads conversation-events, so it needs no Kafka transaction and no consumer group: it assigns
every partition itself, seeks to the offsets stored beside its rows, and per poll batch folds the
events and stores rows and offsets in one SQLite transaction (store.py). history.json is rewritten
after each batch that changed something, and once on start, so a crash between the SQLite commit
and the file write is repaired by the next start.

`rebuild` folds the whole log into a fresh database with the same code and swaps it in; forked
processes fold shares of the partitions side by side (decoding is most of its CPU time).
One instance per var/ directory; partitions added to the topic later are read after a restart.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import cast

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from agentlog.config import Settings, positive_whole_number
from agentlog.errors import AgentlogError, InvalidMessageError
from agentlog.events.codec import Codec, subject_header
from agentlog.events.envelope import event_subjects
from agentlog.events.registry import SchemaRegistry
from agentlog.faults import pause_point
from agentlog.kafka.client import consumer_config, poll_batch
from agentlog.kafka.reader import read_batches, topic_partitions
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


def rebuild_workers_from_env() -> int:
    """Processes that rebuild a share of the partitions each (AGENTLOG_REBUILD_WORKERS, default one per
    CPU; 1: this process rebuilds them all)."""
    return positive_whole_number(os.environ, "AGENTLOG_REBUILD_WORKERS", os.cpu_count() or 1)
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


def rebuild(settings: Settings, codec: Codec, workers: int | None = None) -> RebuildReport:
    """Fold the whole log from offset 0 into a fresh database, then swap it in.

    Up to `workers` processes rebuild a share of the partitions each (`_rebuild_sharded`); 1 folds
    the log in this process. A running projection notices the swap at its next batch and continues
    from the new offsets.
    """
    directory = projection_dir(settings)
    fresh = directory / f"{DB_NAME}.rebuild"
    for leftover in directory.glob(f"{fresh.name}*"):  # a dead rebuild's files, journals and shards
        leftover.unlink(missing_ok=True)
    decoder = HistoryDecoder(codec, RELEVANT_SUBJECTS)
    workers = rebuild_workers_from_env() if workers is None else workers
    with gc_paused():
        report = _rebuild_sharded(settings, decoder, fresh, workers) if workers > 1 and _CAN_FORK else None
        if report is None:
            report = _rebuild_serial(settings, decoder, fresh)
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


def _scratch(path: Path) -> HistoryStore:
    """A fresh scratch database at `path`: a dead rebuild's file (or its journal) is deleted first."""
    for leftover in (path, path.with_name(f"{path.name}-journal")):
        leftover.unlink(missing_ok=True)
    return HistoryStore(path, scratch=True)


def _rebuild_serial(settings: Settings, decoder: HistoryDecoder, fresh: Path) -> RebuildReport:
    store = _scratch(fresh)
    try:
        messages, invalid = _fold_log(settings, store, decoder, None, REBUILD_FLUSH_EVENTS)
        return RebuildReport(store.offsets(settings.topic(CONVERSATION_EVENTS)), messages, invalid)
    finally:
        store.close()


def _fold_log(settings: Settings, store: HistoryStore, decoder: HistoryDecoder, partitions: list[int] | None,
              flush_events: int, conversations: set[str] | None = None) -> tuple[int, int]:
    """Fold every message of conversation-events (of `partitions` only, when given) into `store`; return
    how many messages were read and how many of them were invalid. `conversations` collects the ids of
    the conversations the decoded events name.

    The fold stays in memory across read batches and is written every `flush_events` applied events
    (and at the end), so each conversation is rewritten once per flush, not once per batch.
    """
    state = HistoryState()
    offsets: dict[tuple[str, int], int] = {}
    messages = invalid = 0
    for chunk in read_batches(settings, settings.topic(CONVERSATION_EVENTS), REBUILD_READ_BATCH, partitions=partitions):
        batch = decode_batch(decoder, chunk)
        messages, invalid = messages + len(chunk), invalid + batch.invalid
        store.fold_into(state, batch.events)
        offsets.update(batch.offsets)
        if conversations is not None:
            conversations.update(event.conversation_id for event in batch.events)
        if len(state.applied) >= flush_events:
            store.write(state, offsets)
            state = HistoryState()
    store.write(state, offsets)
    return messages, invalid


# Rebuilders are forked: they start at once, with the decoder's compiled validators.
_CAN_FORK = "fork" in multiprocessing.get_all_start_methods()


def _rebuild_sharded(settings: Settings, decoder: HistoryDecoder, fresh: Path, workers: int) -> RebuildReport | None:
    """Rebuild with up to `workers` forked processes, each folding a share of the partitions into a
    database of its own, then copy their rows together in SQL. None when they overlap.

    Decoding is most of a rebuild's CPU time, and a conversation's events share its key and so its
    partition: each process runs the serial fold over its partitions, in log order, and so makes the
    very rows the serial fold makes of those conversations. A conversation named in two shares (as
    after partitions were added to the topic), or an event applied in two, makes the log be folded
    again serially. A forked process creates its own Kafka client and uses nothing else of
    this process's (a client must not cross a fork)."""
    topic = settings.topic(CONVERSATION_EVENTS)
    partitions = topic_partitions(settings, topic)
    shares = [partitions[n::workers] for n in range(min(workers, len(partitions)))]
    if len(shares) < 2:
        return None
    shards = [fresh.with_name(f"{fresh.name}.{n}") for n in range(len(shares))]
    try:
        outcomes = _run_rebuilders(settings, decoder, dict(zip(shards, shares, strict=True)))
        named = [conversations for _, _, conversations in outcomes]
        if len(set().union(*named)) < sum(map(len, named)):
            log.warning("a conversation spans the rebuild's shares of the partitions: folding serially")
            return None
        shards[0].replace(fresh)  # the first share's rows stay where they are; the others are copied in
        store = HistoryStore(fresh, scratch=True)
        try:
            if not store.merge(shards[1:]):
                log.warning("an event was applied in two of the rebuild's shares: folding serially")
                return None
            return RebuildReport(store.offsets(topic), sum(m for m, _, _ in outcomes), sum(i for _, i, _ in outcomes))
        finally:
            store.close()
    finally:
        for shard in shards:
            shard.unlink(missing_ok=True)


Outcome = tuple[int, int, set[str]]


def _run_rebuilders(settings: Settings, decoder: HistoryDecoder, shares: dict[Path, list[int]]) -> list[Outcome]:
    """Run one forked rebuilder per (shard file, partitions); what each read: messages, invalid ones, and
    the conversations named."""
    context = multiprocessing.get_context("fork")
    running: dict[Connection, multiprocessing.process.BaseProcess] = {}
    outcomes: list[Outcome] = []
    flush_events = max(1, REBUILD_FLUSH_EVENTS // len(shares))  # the same memory bound over all of them
    try:
        for n, (shard, share) in enumerate(shares.items()):
            receive, send = context.Pipe(duplex=False)
            process = context.Process(target=_rebuild_share, args=(settings, decoder, share, shard, flush_events, send),
                                      daemon=True, name=f"agentlog-rebuild-{n}")
            process.start()
            send.close()
            running[receive] = process
        while running:
            for ready in wait(list(running)):
                receive = cast(Connection, ready)
                try:
                    outcome = receive.recv()
                except EOFError:
                    raise AgentlogError("a rebuild process exited without finishing") from None
                if isinstance(outcome, str):
                    raise AgentlogError(f"a rebuild process failed: {outcome}")
                outcomes.append(outcome)
                running.pop(receive).join()
                receive.close()
        return outcomes
    finally:
        for receive, unfinished in running.items():
            receive.close()
            unfinished.terminate()
            unfinished.join()


def _rebuild_share(settings: Settings, decoder: HistoryDecoder, share: list[int], shard: Path, flush_events: int,
                   send: Connection) -> None:
    """A forked rebuilder: fold `share` into `shard`, then send its outcome (or its error, as a string)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops the rebuilders itself
    try:
        store = _scratch(shard)
        try:
            conversations: set[str] = set()
            messages, invalid = _fold_log(settings, store, decoder, share, flush_events, conversations)
        finally:
            store.close()
        send.send((messages, invalid, conversations))
    except Exception as error:  # reported to the parent, which raises it
        send.send(f"{type(error).__name__}: {error}")
    finally:
        send.close()


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
