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

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

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


class LiveLog:
    """The process's single reader of conversation-events; start() once, close() at shutdown."""

    def __init__(self, settings: Settings, codec: Codec, on_event: Callable[[Envelope], None]) -> None:
        self.settings = settings
        self.codec = codec
        self.topic = settings.topic(CONVERSATION_EVENTS)
        self.on_event = on_event
        self.partitions = 0
        self.caught_up = threading.Event()
        self._start_ends: dict[int, int] = {}
        self._listeners: set[Listener] = set()
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None
        self._remaining: set[int] = set()
        self.failure: str | None = None

    def start(self) -> None:
        """Assign every partition from its beginning (blocking: call it off the event loop)."""
        consumer = Consumer(consumer_config(self.settings, None, "agentlog-gateway"))
        metadata = consumer.list_topics(self.topic, timeout=30).topics.get(self.topic)
        if metadata is None or metadata.error is not None:
            consumer.close()
            raise AgentlogError(f"topic {self.topic} does not exist; run `agentlog init`")
        assignment = []
        low_of: dict[int, int] = {}
        for partition in sorted(metadata.partitions):
            low, high = watermarks(consumer, self.topic, partition)
            self._start_ends[partition] = high
            low_of[partition] = low
            assignment.append(TopicPartition(self.topic, partition, low))
        self.partitions = len(assignment)
        consumer.assign(assignment)
        self._consumer = consumer
        self._remaining = {p for p, high in self._start_ends.items() if high > low_of[p]}
        if not self._remaining:
            self.caught_up.set()
        self._thread = threading.Thread(target=self._run, name="gateway-live-log", daemon=True)
        self._thread.start()

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
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._consumer is not None:
            self._consumer.close()
        with self._lock:
            listeners, self._listeners = self._listeners, set()
        for listener in listeners:
            listener.deliver(None)

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
                offset, partition = message.offset(), message.partition()
                assert offset is not None and partition is not None
                self.failure = None
                self._handle(offset >= self._start_ends.get(partition, 0), message.value())
            if not self.caught_up.is_set():
                self._check_caught_up(self._consumer)

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
