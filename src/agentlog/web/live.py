"""One background reader of conversation-events per gateway process, fanned out to async listeners.

Many gateway instances may run at once and each must see the answers to its own requests, so the
reader joins no consumer group: it assigns every partition itself, from the beginning, and feeds
(1) the conversation index and (2) whoever listens — a `/api/chat` request waiting for its turn's
answer, or an SSE stream following a conversation. A request never opens a consumer of its own:
with hundreds of requests that would mean hundreds of fetch sessions against the broker.

A listener is registered *before* its command is produced, and the reader sees every later message
of the log, so no event of the turn can slip past it. Readers of the log drop duplicates by id.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from agentlog.config import Settings
from agentlog.errors import AgentlogError
from agentlog.events.codec import Codec
from agentlog.events.envelope import Envelope
from agentlog.kafka.client import consumer_config, poll_batch
from agentlog.kafka.reader import watermarks
from agentlog.kafka.topics import CONVERSATION_EVENTS

log = logging.getLogger(__name__)

SEEN_IDS = 100_000  # duplicates are re-produced within moments of the original; this window is ample


@dataclass(eq=False)
class Listener:
    """Events matching (conversation, turn) delivered to an asyncio queue on the listener's own loop.

    `turn_id=None` follows the whole conversation. `live_only` skips what was in the log before the
    gateway started, so an SSE stream shows new events rather than the reader's catch-up. `user_id`
    keeps only that user's events: a stream never shows another user's turn, whatever its id.
    """

    conversation_id: str
    turn_id: str | None
    live_only: bool
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Envelope | None] = field(default_factory=asyncio.Queue)
    user_id: str | None = None

    def matches(self, event: Envelope, live: bool) -> bool:
        if self.live_only and not live:
            return False
        return (event.conversation_id == self.conversation_id and self.turn_id in (None, event.turn_id)
                and self.user_id in (None, event.user_id))

    def deliver(self, event: Envelope | None) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)


class TopicTail:
    """A background thread reading every partition of one topic with a group-less consumer, so each
    gateway process sees all of it; subclasses choose where to start and what to do per message."""

    def __init__(self, settings: Settings, topic: str, client_id: str) -> None:
        self.settings = settings
        self.topic = topic
        self.client_id = client_id
        self.failure: str | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None

    def _open(self) -> tuple[Consumer, list[int]]:
        """A consumer and the topic's partitions (blocking: call it off the event loop)."""
        consumer = Consumer(consumer_config(self.settings, None, self.client_id))
        metadata = consumer.list_topics(self.topic, timeout=30).topics.get(self.topic)
        if metadata is None or metadata.error is not None:
            consumer.close()
            raise AgentlogError(f"topic {self.topic} does not exist; run `agentlog init`")
        return consumer, sorted(metadata.partitions)

    def _follow(self, consumer: Consumer, assignment: list[TopicPartition]) -> None:
        consumer.assign(assignment)
        self._consumer = consumer
        self._thread = threading.Thread(target=self._run, name=self.client_id, daemon=True)
        self._thread.start()

    def _stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._consumer is not None:
            self._consumer.close()

    def _run(self) -> None:
        assert self._consumer is not None
        while not self._stopping.is_set():
            try:
                messages = poll_batch(self._consumer, 500, 0.2)
            except KafkaException as exc:  # the reader must outlive a transient client error
                self.failure = str(exc)
                log.warning("reading %s failed: %s", self.topic, exc)
                continue
            for message in messages:
                failure = message.error()
                if failure is not None:
                    if failure.code() != KafkaError._PARTITION_EOF:
                        self.failure = str(failure)
                        log.warning("reading %s: %s", self.topic, failure)
                    continue
                self.failure = None
                self._on_message(message)
            self._after_batch(self._consumer)

    def _on_message(self, message: Message) -> None:
        raise NotImplementedError

    def _after_batch(self, consumer: Consumer) -> None:
        """Called after each poll, messages or not."""


class LiveLog(TopicTail):
    """The process's single reader of conversation-events; start() once, close() at shutdown."""

    def __init__(self, settings: Settings, codec: Codec, on_event: Callable[[Envelope], None]) -> None:
        super().__init__(settings, settings.topic(CONVERSATION_EVENTS), "agentlog-gateway")
        self.codec = codec
        self.on_event = on_event
        self.partitions = 0
        self.caught_up = threading.Event()
        self._start_ends: dict[int, int] = {}
        self._listeners: set[Listener] = set()
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remaining: set[int] = set()

    def start(self) -> None:
        """Assign every partition from its beginning (blocking: call it off the event loop)."""
        consumer, partitions = self._open()
        assignment = []
        low_of: dict[int, int] = {}
        for partition in partitions:
            low, high = watermarks(consumer, self.topic, partition)
            self._start_ends[partition] = high
            low_of[partition] = low
            assignment.append(TopicPartition(self.topic, partition, low))
        self.partitions = len(assignment)
        self._remaining = {p for p, high in self._start_ends.items() if high > low_of[p]}
        if not self._remaining:
            self.caught_up.set()
        self._follow(consumer, assignment)

    def listen(self, conversation_id: str, turn_id: str | None = None, *, live_only: bool = False,
               user_id: str | None = None) -> Listener:
        """Register a listener on the running loop; call `forget` when done with it."""
        listener = Listener(conversation_id, turn_id, live_only, asyncio.get_running_loop(), user_id=user_id)
        with self._lock:
            self._listeners.add(listener)
        return listener

    def forget(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.discard(listener)

    def close(self) -> None:
        """Stop the reader and wake every listener with None (its stream then ends)."""
        self._stop()
        with self._lock:
            listeners, self._listeners = self._listeners, set()
        for listener in listeners:
            listener.deliver(None)

    def _on_message(self, message: Message) -> None:
        offset, partition = message.offset(), message.partition()
        assert offset is not None and partition is not None
        self._handle(offset >= self._start_ends.get(partition, 0), message.value())

    def _after_batch(self, consumer: Consumer) -> None:
        if not self.caught_up.is_set():
            self._check_caught_up(consumer)

    def _check_caught_up(self, consumer: Consumer) -> None:
        """Positions, not messages, say when the start-up backlog is read: a partition's last
        offsets may be transaction markers that no message carries."""
        positions = consumer.position([TopicPartition(self.topic, p) for p in self._remaining])
        self._remaining -= {tp.partition for tp in positions if tp.offset >= self._start_ends[tp.partition]}
        if not self._remaining:
            self.caught_up.set()

    def _handle(self, live: bool, value: bytes | None) -> None:
        try:
            event = self.codec.decode(value)
        except AgentlogError:
            return  # an invalid message is the consuming services' business (they dead-letter it)
        if event.id in self._seen:
            return
        self._seen[event.id] = None
        if len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        self.on_event(event)
        with self._lock:
            targets = [listener for listener in self._listeners if listener.matches(event, live)]
        for listener in targets:
            listener.deliver(event)
