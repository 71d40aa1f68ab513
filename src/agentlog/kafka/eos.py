"""The exactly-once read-process-write loop every consuming service runs.

Per poll batch (see reference/eos-commit-order.md):
  1. consume a batch (read_committed);
  2. decode each message (a bad one becomes a dead letter) and hand it to the handler, which
     folds it into its state and returns the messages to produce;
  3. begin a transaction, produce the outputs, send the consumed offsets, commit;
  4. only after the commit, let the handler persist its local state (`after_commit`).
A crash between 3 and 4 leaves the local store behind the committed offsets; handlers recover that
gap on assignment by replaying the log. Commit errors take one of three branches: retriable (try
the commit again), abortable (abort, rewind the handler, seek back to the committed offsets), or
fatal (fenced by a newer instance: raise FencedError and let the supervisor restart us).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
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
from agentlog.events.codec import Codec
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


@dataclass(frozen=True)
class Output:
    """A message to produce: `topic` is the logical topic name, the key is the conversation id."""

    topic: str
    envelope: Envelope


@dataclass(frozen=True)
class RawOutput:
    topic: str
    key: bytes | None
    value: bytes
    subject: str
    headers: Headers | None = None


class Handler:
    """What a service plugs into the loop. Stateless services override `handle` only."""

    def bind(self, loop: TransactionalLoop) -> None:
        """Called once before consuming; stateful handlers keep the loop to read committed offsets."""

    def on_assign(self, partitions: list[TopicPartition]) -> None:
        """Partitions were assigned: recover their state before any of their messages is handled."""

    def on_revoke(self, partitions: list[TopicPartition]) -> None:
        """Partitions were taken away: forget their state."""

    def handle(self, envelope: Envelope, message: Message, now: datetime) -> list[Output]:
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
        self._last_batch = 0
        self._rebalances = 0
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
        self.handler.on_revoke(partitions)

    def committed(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return list(self.consumer.committed(partitions, timeout=30))

    # -- the loop ------------------------------------------------------------------------------
    def _poll_timeout(self) -> float:
        wakeup = self.handler.next_wakeup()
        if wakeup is None:
            return MAX_IDLE_WAIT
        return min(MAX_IDLE_WAIT, max(0.0, wakeup - time.monotonic()))

    def _poll_once(self) -> None:
        # Under load (the last batch had company) linger briefly to batch more per transaction.
        linger = self.batch_linger if self._last_batch > 1 else 0.0
        rebalances = self._rebalances
        messages = poll_batch(self.consumer, self.batch_size, self._poll_timeout(), linger)
        self._last_batch = len(messages)
        if messages and self._rebalances != rebalances:
            # The assignment changed while this batch was fetched: some messages may belong to
            # partitions (and state) no longer ours. Drop the batch; re-read from the committed offsets.
            log.info("%s dropped a batch of %d fetched across a rebalance", self.service, len(messages))
            self._seek_to_committed()
            return
        now = utc_now()
        outputs: list[RawOutput] = []
        offsets: dict[tuple[str, int], int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("%s consume error: %s", self.service, error)
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            assert topic is not None and partition is not None and offset is not None
            offsets[(topic, partition)] = offset + 1
            outputs.extend(self._handle(message, now))
        for timed in self.handler.due(now):
            with handling(self.service, timed.envelope):
                outputs.extend(self._encode([timed]))
        if outputs or offsets:
            self._commit(outputs, offsets)
        self.metrics.batch(len(messages), len(outputs))

    def _handle(self, message: Message, now: datetime) -> list[RawOutput]:
        try:
            envelope = self.codec.decode(message.value())
        except InvalidMessageError as error:
            return [self._dead_letter(message, error.reason, error.message_type)]
        try:
            with handling(self.service, envelope, message.headers()):
                return self._encode(self.handler.handle(envelope, message, now))
        except InvalidMessageError:
            raise  # our own output broke its schema: a bug, never silently dropped
        except Exception as error:
            self.metrics.error()
            log.exception("%s could not process %s %s", self.service, envelope.subject, envelope.id)
            return [self._dead_letter(message, f"{self.service} failed to process it: {error!r}",
                                      envelope.subject)]

    def _dead_letter(self, message: Message, reason: str, message_type: str | None) -> RawOutput:
        self.metrics.dead_letter()
        log.warning("%s dead-lettered %s[%s]@%s: %s", self.service, message.topic(), message.partition(),
                    message.offset(), reason)
        record = dlq.dead_letter_record(message, reason, self.service, message_type)
        key = message.key()
        return RawOutput(self.settings.topic(DEAD_LETTER_QUEUE), key if isinstance(key, bytes) else None,
                         self.codec.encode_record(dlq.SUBJECT, record), dlq.SUBJECT)

    def _encode(self, outputs: list[Output]) -> list[RawOutput]:
        """Serialise outputs, each carrying the current span's traceparent."""
        headers = current_headers()
        return [
            RawOutput(self.settings.topic(o.topic), o.envelope.conversation_id.encode(), self.codec.encode(o.envelope),
                      o.envelope.subject, headers)
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
        for tp in self.committed(assignment):
            target = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            try:
                self.consumer.seek(TopicPartition(tp.topic, tp.partition, target))
            except KafkaException as error:
                # A partition whose fetcher has not started yet starts at the committed offset anyway.
                log.debug("%s seek %s[%s] skipped: %s", self.service, tp.topic, tp.partition, error)
