"""The exactly-once read-process-write loop every consuming service runs.

Per poll batch (see reference/eos-commit-order.md):
  1. consume a batch (read_committed);
  2. skip the messages whose subject header the handler does not want (unread: see codec.py),
     decode the others (a bad one becomes a dead letter) and hand them to the handler, which
     folds each into its state and returns the messages to produce;
  3. begin a transaction, produce the outputs, send the consumed offsets, commit;
  4. only after the commit, let the handler persist its local state (`after_commit`).
A batch that produced nothing (e.g. events a fold only absorbs) does not commit at once: its offsets
wait for the next transaction with outputs, or OFFSETS_DELAY, or an idle poll. An offsets-only
transaction costs the broker as much as any other, and a crash before it only means those
messages are read and folded again, as if they had been part of one larger batch.
A crash between 3 and 4 leaves the local store behind the committed offsets; handlers recover that
gap on assignment by replaying the log. Commit errors take one of three branches: retriable (try
the commit again), abortable (abort, rewind the handler, seek back to the committed offsets), or
fatal (fenced by a newer instance: raise FencedError and let the supervisor restart us).

Slow work (a tool call) must not hold up polling, or the group evicts the consumer after
max.poll.interval.ms and hands its partitions, running work and all, to another member. A handler
may therefore return a Future of its outputs instead of the outputs. Each partition keeps its
consumed messages in order until their outputs are ready; a transaction takes the leading ready
ones and the offset just past them, so an offset never passes a message before its outputs are in
the same or an earlier transaction. While a partition has work running it is paused and the loop
keeps polling (the other partitions, timers and finished work). A revoked partition forgets its
unfinished messages: the next owner reads them again from the committed offset.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from agentlog.config import Settings
from agentlog.errors import FencedError, InvalidMessageError
from agentlog.events.codec import SUBJECT_HEADER, Codec, IncomingHeaders, subject_header
from agentlog.events.envelope import Envelope, utc_now
from agentlog.faults import pause_point
from agentlog.kafka import dlq
from agentlog.kafka.client import consumer_config, poll_batch, transactional_producer_config
from agentlog.kafka.loop_metrics import LoopMetrics
from agentlog.kafka.topics import DEAD_LETTER_QUEUE
from agentlog.observability import Headers, current_headers, handling

log = logging.getLogger(__name__)

BATCH_SIZE = 500
MAX_IDLE_WAIT = 0.25
# While deferred work runs, poll this often so finished work commits promptly.
BUSY_POLL = 0.02
# How long a batch waits for its own deferred work before committing what is ready: fast calls still
# share one transaction per batch; slow ones commit later, from a poll of their own.
SETTLE = 0.2
# How long the offsets of batches without outputs may wait for a transaction that has outputs.
OFFSETS_DELAY = float(os.environ.get("AGENTLOG_OFFSETS_DELAY_MS", "500")) / 1000


@dataclass(frozen=True)
class Output:
    """A message to produce: `topic` is the logical topic name, the key is the conversation id;
    `headers` are added to the subject and trace headers every message carries."""

    topic: str
    envelope: Envelope
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class RawOutput:
    topic: str
    key: bytes | None
    value: bytes
    subject: str
    headers: Headers | None = None


@dataclass(frozen=True)
class Deferred:
    """A consumed message whose outputs a handler is still working out."""

    message: Message
    envelope: Envelope
    future: Future[list[Output]]
    headers: Headers


Slot = list[RawOutput] | Deferred  # the outputs of one consumed message, or the work that will make them


def ready_prefix(slots: deque[tuple[int, Slot]]) -> list[tuple[int, Slot]]:
    """Take the leading (offset, slot) pairs whose outputs are ready; stop at the first still running,
    so the offset committed after them never passes a message whose outputs are not produced yet."""
    ready = []
    while slots and not (isinstance(slots[0][1], Deferred) and not slots[0][1].future.done()):
        ready.append(slots.popleft())
    return ready


def offsets_due(pending_since: float, polled_messages: bool, now: float | None = None) -> bool:
    """Whether offsets without outputs should be committed now: when the loop is idle (a poll found
    nothing) or they have waited OFFSETS_DELAY, so lag settles to zero soon after the load stops."""
    return not polled_messages or (time.monotonic() if now is None else now) - pending_since >= OFFSETS_DELAY


class Handler:
    """What a service plugs into the loop. Stateless services override `handle` only."""

    def bind(self, loop: TransactionalLoop) -> None:
        """Called once before consuming; stateful handlers keep the loop to read committed offsets."""

    def on_assign(self, partitions: list[TopicPartition]) -> None:
        """Partitions were assigned: recover their state before any of their messages is handled."""

    def on_revoke(self, partitions: list[TopicPartition]) -> None:
        """Partitions were taken away: forget their state."""

    def wants(self, subject: str) -> bool:
        """Whether messages of this subject (kind.Type) reach `handle`; the loop skips the others, unread
        when their subject header says so. A topic's invalid messages are dead-lettered only by the
        consumers that read them, so every topic needs one consumer that wants everything (for
        conversation-events: the orchestrator, which skips only an inline turn's recorded rest: see
        events/codec.py)."""
        return True

    def skips(self, message: Message, headers: IncomingHeaders) -> bool:
        """Whether the handler knows from the message's headers alone that it changes nothing (e.g. the
        recorded rest of a turn it has settled): then it is skipped unread."""
        return False

    def reads(self, message: Message) -> bool:
        """Whether the message must be decoded at all: its headers alone may show that it is not."""
        headers = message.headers()
        subject = subject_header(headers)
        return (subject is None or self.wants(subject)) and not self.skips(message, headers)

    def handle(self, envelope: Envelope, message: Message, now: datetime) -> list[Output] | Future[list[Output]]:
        """The outputs of one message, or a Future of them for work longer than a poll interval."""
        raise NotImplementedError

    def due(self, now: datetime) -> list[Output]:
        """Messages caused by the passage of time (timers); none by default."""
        return []

    def next_wakeup(self) -> float | None:
        """Monotonic time of the next timer, if any, so the loop polls no longer than that."""
        return None

    def after_commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """The transaction holding these next offsets committed: persist local state now."""

    def rewind(self) -> None:
        """The transaction was aborted: drop state changes made since the last commit."""


class Watchdog:
    """Ends the process when a guarded call outlives its budget.

    After a broker restart librdkafka can leave `send_offsets_to_transaction` waiting forever,
    past its own timeout, for a coordinator request that is never sent. Nothing inside the
    process can cancel that call; a restart can: the next incarnation's `init_transactions`
    aborts the stuck transaction and the loop resumes from the committed offsets, the same
    recovery as after any crash. The supervisor restarts the process.
    """

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self._deadline: float | None = None
        self._what = ""
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def guard(self, what: str) -> Iterator[None]:
        with self._lock:
            self._deadline, self._what = time.monotonic() + self.budget_s, what
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="txn-watchdog", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._deadline = None

    def _watch(self) -> None:
        while True:
            time.sleep(1.0)
            with self._lock:
                expired = self._deadline is not None and time.monotonic() > self._deadline
                what = self._what
            if expired:
                log.critical("%s did not finish within %.0f s: exiting so that a restart recovers it",
                             what, self.budget_s)
                logging.shutdown()
                os._exit(75)


class TransactionalLoop:
    def __init__(
        self,
        settings: Settings,
        service: str,
        topics: Sequence[str],
        handler: Handler,
        codec: Codec,
        instance: str | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.settings = settings
        self.service = service
        self.batch_size = batch_size
        self.instance = instance or settings.instance_id
        self.topics = [settings.topic(t) for t in topics]
        self.handler = handler
        self.codec = codec
        self.stopping = threading.Event()
        client_id = f"{service}-{self.instance}"
        self.producer = Producer(transactional_producer_config(settings, client_id))
        # Static membership: a restarted instance (same id) takes its partitions back at once,
        # instead of waiting for the group to time out its previous incarnation.
        self.consumer = Consumer({**consumer_config(settings, service, client_id),
                                  "group.instance.id": settings.topic(client_id)})
        self.metrics = LoopMetrics(service)
        self.batch_linger = float(os.environ.get("AGENTLOG_BATCH_LINGER_MS", "5")) / 1000
        self._last_productive = 0  # messages of the last batch that produced outputs
        self._rebalances = 0
        self._slots: dict[tuple[str, int], deque[tuple[int, Slot]]] = {}  # consumed, not yet committed
        self._paused: set[tuple[str, int]] = set()
        self._pending_offsets: dict[tuple[str, int], int] = {}  # of batches without outputs, not yet committed
        self._pending_since = 0.0
        self.watchdog = Watchdog(float(os.environ.get("AGENTLOG_TXN_WATCHDOG_S", "60")))
        handler.bind(self)

    # -- lifecycle -----------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stopping.set())

    def run(self, ready: threading.Event | None = None) -> None:
        # init_transactions first: it aborts a previous incarnation's open transaction, which
        # would otherwise hold back every read_committed reader.
        self.producer.init_transactions(60)
        # What exists now (modules, compiled schemas, clients: most of the heap) lives as long as the
        # process: frozen, the garbage collector's full passes no longer scan it, pauses of 50-120 ms
        # under load otherwise. Collected first, so no start-up garbage is frozen with it.
        gc.collect()
        gc.freeze()
        self.consumer.subscribe(self.topics, on_assign=self._assigned, on_revoke=self._revoked)
        if ready is not None:
            ready.set()
        try:
            while not self.stopping.is_set():
                self._poll_once()
        finally:
            self.consumer.close()
            self.producer.flush(10)

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._rebalances += 1
        log.info("%s assigned %s", self.service, [(p.topic, p.partition) for p in partitions])
        self.handler.on_assign(partitions)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._rebalances += 1
        log.info("%s revoked %s", self.service, [(p.topic, p.partition) for p in partitions])
        self._forget({(p.topic, p.partition) for p in partitions})
        self.handler.on_revoke(partitions)

    def committed(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return list(self.consumer.committed(partitions, timeout=30))

    # -- the loop ------------------------------------------------------------------------------
    def _poll_timeout(self) -> float:
        longest = BUSY_POLL if any(self._slots.values()) else MAX_IDLE_WAIT
        if self._pending_offsets:
            longest = min(longest, max(0.0, self._pending_since + OFFSETS_DELAY - time.monotonic()))
        wakeup = self.handler.next_wakeup()
        if wakeup is None:
            return longest
        return min(longest, max(0.0, wakeup - time.monotonic()))

    def _poll_once(self) -> None:
        # Under load (several messages of the last batch produced outputs) linger briefly to batch more
        # per transaction. Messages that only fold (e.g. a service's own events read back) do not count:
        # at light load they would make every next message wait out the linger.
        linger = self.batch_linger if self._last_productive > 1 else 0.0
        rebalances = self._rebalances
        messages = poll_batch(self.consumer, self.batch_size, self._poll_timeout(), linger)
        self._last_productive = 0
        if messages and self._rebalances != rebalances:
            # The assignment changed while this batch was fetched: some messages may belong to
            # partitions (and state) no longer ours. Drop the batch; re-read from the committed offsets.
            log.info("%s dropped a batch of %d fetched across a rebalance", self.service, len(messages))
            self._seek_to_committed()
            return
        now = utc_now()
        started: list[Future[list[Output]]] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("%s consume error: %s", self.service, error)
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            assert topic is not None and partition is not None and offset is not None
            slot = self._handle(message, now)
            self._last_productive += bool(slot)
            self._slots.setdefault((topic, partition), deque()).append((offset, slot))
            if isinstance(slot, Deferred):
                started.append(slot.future)
        if started:
            wait(started, timeout=SETTLE)
        outputs, offsets = self._take_ready()
        for timed in self.handler.due(now):
            with handling(self.service, timed.envelope):
                outputs.extend(self._encode([timed]))
        if offsets and not self._pending_offsets:
            self._pending_since = time.monotonic()
        self._pending_offsets.update(offsets)
        if outputs or (self._pending_offsets and offsets_due(self._pending_since, bool(messages))):
            offsets, self._pending_offsets = self._pending_offsets, {}
            self._commit(outputs, offsets)
        self._pause_busy()
        self.metrics.batch(len(messages), len(outputs))

    def _handle(self, message: Message, now: datetime) -> Slot:
        if not self.handler.reads(message):
            return []
        try:
            envelope = self.codec.decode(message.value())
        except InvalidMessageError as error:
            return [self._dead_letter(message, error.reason, error.message_type)]
        if not self.handler.wants(envelope.subject):
            return []
        try:
            with handling(self.service, envelope, message.headers()):
                result = self.handler.handle(envelope, message, now)
                if isinstance(result, Future):
                    return Deferred(message, envelope, result, current_headers())
                return self._encode(result)
        except InvalidMessageError:
            raise  # our own output broke its schema: a bug, never silently dropped
        except Exception as error:
            return self._failed(message, envelope, error)

    def _resolve(self, deferred: Deferred) -> list[RawOutput]:
        try:
            return self._encode(deferred.future.result(), deferred.headers)
        except InvalidMessageError:
            raise
        except Exception as error:
            return self._failed(deferred.message, deferred.envelope, error)

    def _failed(self, message: Message, envelope: Envelope, error: Exception) -> list[RawOutput]:
        self.metrics.error()
        log.error("%s could not process %s %s", self.service, envelope.subject, envelope.id, exc_info=error)
        return [self._dead_letter(message, f"{self.service} failed to process it: {error!r}", envelope.subject)]

    def _take_ready(self) -> tuple[list[RawOutput], dict[tuple[str, int], int]]:
        """The outputs of every partition's leading ready messages, and the offsets just past them."""
        outputs: list[RawOutput] = []
        offsets: dict[tuple[str, int], int] = {}
        for key, slots in self._slots.items():
            for offset, slot in ready_prefix(slots):
                outputs.extend(self._resolve(slot) if isinstance(slot, Deferred) else slot)
                offsets[key] = offset + 1
        return outputs, offsets

    def _pause_busy(self) -> None:
        """Pause exactly the partitions with work running: no more of their messages until it is done."""
        busy = {key for key, slots in self._slots.items() if slots}
        if busy - self._paused:
            self.consumer.pause([TopicPartition(t, p) for t, p in busy - self._paused])
        self._resume(self._paused - busy)
        self._paused = busy
        self.metrics.paused(len(busy))

    def _resume(self, keys: set[tuple[str, int]]) -> None:
        if keys:
            self.consumer.resume([TopicPartition(t, p) for t, p in keys])

    def _forget(self, keys: set[tuple[str, int]]) -> None:
        """Drop the uncommitted messages of these partitions (they will be read again from the committed
        offset) and let them be fetched again."""
        for key in keys:
            self._slots.pop(key, None)
            self._pending_offsets.pop(key, None)
        self._resume(self._paused & keys)
        self._paused -= keys

    def _dead_letter(self, message: Message, reason: str, message_type: str | None) -> RawOutput:
        self.metrics.dead_letter()
        log.warning("%s dead-lettered %s[%s]@%s: %s", self.service, message.topic(), message.partition(),
                    message.offset(), reason)
        record = dlq.dead_letter_record(message, reason, self.service, message_type)
        key = message.key()
        return RawOutput(self.settings.topic(DEAD_LETTER_QUEUE), key if isinstance(key, bytes) else None,
                         self.codec.encode_record(dlq.SUBJECT, record), dlq.SUBJECT)

    def _encode(self, outputs: list[Output], headers: Headers | None = None) -> list[RawOutput]:
        """Serialise outputs, each carrying its subject and the current span's traceparent (or the given
        `headers`)."""
        headers = current_headers() if headers is None else headers
        return [
            RawOutput(self.settings.topic(o.topic), o.envelope.conversation_id.encode(), self.codec.encode(o.envelope),
                      o.envelope.subject, [*headers, *o.headers, (SUBJECT_HEADER, o.envelope.subject.encode())])
            for o in outputs
        ]

    def _commit(self, outputs: list[RawOutput], offsets: dict[tuple[str, int], int]) -> None:
        with self.watchdog.guard(f"{self.service} transaction"), self.metrics.transaction():
            self._transact(outputs, offsets)

    def _transact(self, outputs: list[RawOutput], offsets: dict[tuple[str, int], int]) -> None:
        try:
            self.producer.begin_transaction()
            for out in outputs:
                self._produce(out)
            if offsets:
                self.producer.send_offsets_to_transaction(
                    [TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                    self.consumer.consumer_group_metadata(),
                    30,
                )
            self._pause_points("before_commit", outputs)
            self._commit_with_retries()
        except KafkaException as exc:
            error: Any = exc.args[0]
            if error.fatal():
                raise FencedError(f"{self.service}: {error}") from exc
            # Abortable, or retriable but not worth waiting on (e.g. the group coordinator moved
            # while offsets were being sent): abort, forget what this batch changed, and read the
            # batch again from the committed offsets. Its outputs never became visible.
            log.warning("%s aborting transaction (%s): %s", self.service,
                        "abortable" if error.txn_requires_abort() else "retriable", error)
            self.producer.abort_transaction(30)
            self.metrics.aborted()
            self.handler.rewind()
            self._seek_to_committed()
            return
        self._pause_points("after_commit", outputs)
        self.handler.after_commit(offsets)

    def _pause_points(self, moment: str, outputs: list[RawOutput]) -> None:
        """Crash tests stop a service at `<service>.<moment>` or `<service>.<moment>:<subject>`."""
        pause_point(f"{self.service}.{moment}")
        for subject in sorted({out.subject for out in outputs}):
            pause_point(f"{self.service}.{moment}:{subject}")

    def _produce(self, out: RawOutput) -> None:
        while True:
            try:
                self.producer.produce(out.topic, key=out.key, value=out.value, headers=out.headers)
                return
            except BufferError:
                self.producer.poll(0.05)

    def _commit_with_retries(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                self.producer.commit_transaction(30)
                return
            except KafkaException as exc:
                error: Any = exc.args[0]
                if error.retriable() and time.monotonic() < deadline:
                    continue
                raise

    def _seek_to_committed(self) -> None:
        assignment = self.consumer.assignment()
        self._forget({(tp.topic, tp.partition) for tp in assignment} | set(self._slots))
        for tp in self.committed(assignment):
            target = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            try:
                self.consumer.seek(TopicPartition(tp.topic, tp.partition, target))
            except KafkaException as error:
                # A partition whose fetcher has not started yet starts at the committed offset anyway.
                log.debug("%s seek %s[%s] skipped: %s", self.service, tp.topic, tp.partition, error)
