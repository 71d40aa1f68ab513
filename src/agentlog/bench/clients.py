"""How the benchmark asks: straight into Kafka, or through the web gateway's POST /api/chat.

Either way one shared EventWatcher, started before the first question, collects every event of
the run's conversations (for per-stage latency) and resolves the turn waiting for each answer.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from confluent_kafka import KafkaError, Message

from agentlog.bench.scenarios import Question
from agentlog.config import Settings
from agentlog.conversation import ConversationClient, EventWatcher
from agentlog.errors import AgentlogError
from agentlog.events.codec import Codec, IncomingHeaders, subject_header
from agentlog.events.envelope import Envelope, new_id

if TYPE_CHECKING:
    from agentlog.bench.pending import PendingTurns

ANSWER_SUBJECT = "event.FinalAnswerSynthesized"


@dataclass(frozen=True)
class Answer:
    """One answered turn as the client saw it: `latency` from the send (or its scheduled time) to the
    answer's arrival; the wall-clock times let stages be compared with event timestamps."""

    conversation_id: str
    turn_id: str
    outcome: str
    latency: float
    sent_wall: float
    received_wall: float


class RawMessage(Protocol):
    """What the collector reads of a Kafka message."""

    def key(self) -> bytes | None: ...

    def value(self) -> bytes | None: ...

    def headers(self) -> IncomingHeaders: ...


AnswerHook = Callable[[str, float, float, str], object]  # (turn id, arrival perf counter, wall, outcome)


class RunEvents:
    """What the benchmark keeps of the run's conversations: each answer's arrival, and every event.

    Only what may be an answer (FinalAnswerSynthesized by its subject header, or no header) is
    decoded and validated as it is read, because its arrival ends a latency; every other event is
    kept as bytes and decoded by `events()` after the measured phases, so reading stays cheap while
    the load runs. The conversation-events key (the conversation id) drops other conversations unread.
    """

    def __init__(self, codec: Codec, conversation_prefix: str) -> None:
        self.codec = codec
        self.prefix = conversation_prefix
        self.on_answer: AnswerHook | None = None  # an open loop's pending turns, resolved as answers arrive
        self._key_prefix = conversation_prefix.encode()
        self._raw: list[bytes] = []
        self._answers: dict[str, tuple[float, float, str]] = {}  # turn -> (perf counter, wall, outcome)
        # One event per waiting turn: a shared condition would wake every waiting thread at each answer.
        self._waiting: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def take(self, messages: Iterable[RawMessage], arrived: float, arrived_wall: float) -> None:
        """Keep one batch, read at `arrived` (perf counter) and `arrived_wall`, before decoding any of it."""
        for message in messages:
            key, value = message.key(), message.value()
            if value is None or (key is not None and not key.startswith(self._key_prefix)):
                continue
            self._raw.append(value)
            subject = subject_header(message.headers())
            if subject is None or subject == ANSWER_SUBJECT:
                self._answer(value, arrived, arrived_wall)

    def _answer(self, value: bytes, arrived: float, arrived_wall: float) -> None:
        try:
            event = self.codec.decode(value)
        except AgentlogError:
            return
        if event.type != "FinalAnswerSynthesized" or not event.conversation_id.startswith(self.prefix):
            return
        outcome = str(event.payload.get("outcome"))
        with self._lock:
            if event.turn_id in self._answers:
                return  # a second copy: the first arrival counts
            self._answers[event.turn_id] = (arrived, arrived_wall, outcome)
            waiting = self._waiting.get(event.turn_id)
        if waiting is not None:
            waiting.set()
        hook = self.on_answer
        if hook is not None:
            hook(event.turn_id, arrived, arrived_wall, outcome)

    def wait(self, turn_id: str, timeout: float) -> tuple[float, float, str] | None:
        """(arrival perf counter, arrival wall time, outcome), or None after `timeout` seconds."""
        with self._lock:
            if turn_id in self._answers:
                return self._answers[turn_id]
            arrived = self._waiting.setdefault(turn_id, threading.Event())
        arrived.wait(timeout)
        with self._lock:
            self._waiting.pop(turn_id, None)
            return self._answers.get(turn_id)

    def events(self) -> list[Envelope]:
        """The run's events read so far, decoded and validated now; invalid ones and copies skipped."""
        seen: set[str] = set()
        events: list[Envelope] = []
        for raw in list(self._raw):
            try:
                event = self.codec.decode(raw)
            except AgentlogError:
                continue
            if event.id not in seen and event.conversation_id.startswith(self.prefix):
                seen.add(event.id)
                events.append(event)
        return events


class EventCollector(RunEvents):
    """A thread reading conversation-events from the end on, into RunEvents."""

    def __init__(self, settings: Settings, codec: Codec, conversation_prefix: str) -> None:
        super().__init__(codec, conversation_prefix)
        self.watcher = EventWatcher(settings, codec)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-collector", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = list(self.watcher.messages(0.2))
            self.take(batch, time.perf_counter(), time.time())

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.watcher.close()


class Client(Protocol):
    def ask(self, conversation_id: str, question: Question, started: float, timeout: float) -> Answer | None:
        """Ask and wait; `started` is the perf-counter time latency counts from. None on timeout."""
        ...

    def close(self) -> None: ...


class DirectClient:
    """Produces the UserQueryReceived command itself, as `agentlog ask` does, but without a flush per
    question: the producer is polled after each send, and a command Kafka refuses raises there."""

    def __init__(self, client: ConversationClient, collector: RunEvents) -> None:
        self.client = client
        self.collector = collector
        self._failures: list[str] = []

    def ask(self, conversation_id: str, question: Question, started: float, timeout: float) -> Answer | None:
        sent_wall = time.time() - (time.perf_counter() - started)
        turn_id = new_id()
        self._send(conversation_id, question, turn_id)
        arrived = self.collector.wait(turn_id, timeout)
        self._poll()  # a refused command shows up here at the latest (its answer never comes)
        if arrived is None:
            return None
        return Answer(conversation_id, turn_id, arrived[2], arrived[0] - started, sent_wall, arrived[1])

    def submit(self, conversation_id: str, question: Question, started: float, timeout: float,
               turns: PendingTurns) -> None:
        """Ask without waiting: `turns` is told first, and the collector resolves it with the answer."""
        turn_id = new_id()
        turns.add(turn_id, conversation_id, started, timeout)
        self._send(conversation_id, question, turn_id)

    def flush(self) -> None:
        """Wait until Kafka has taken every command sent; raise if it refused one."""
        if self.client.producer.flush(30):
            raise AgentlogError("Kafka did not acknowledge the benchmark's commands within 30 s")
        self._poll()

    def _send(self, conversation_id: str, question: Question, turn_id: str) -> None:
        command = self.client.question_command(conversation_id, "bench", question.text, turn_id=turn_id,
                                               plan=question.plan)
        self.client.enqueue(command, self._delivered)
        self._poll()

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failures.append(f"{message.key()!r}: {error.str()}")

    def _poll(self) -> None:
        """Serve delivery reports; raise for any command Kafka did not take."""
        self.client.producer.poll(0)
        if self._failures:
            raise AgentlogError(f"Kafka did not take a benchmark command (conversation {self._failures[0]})")

    def close(self) -> None:
        self.client.producer.flush(10)


class GatewayClient:
    """POST {prompt, conversationId} to the gateway's /api/chat: 200 carries the answer; 202 means
    it is still coming, and the collector sees it arrive.

    The gateway names the user: with AGENTLOG_API_KEY set the bench asks as that key's user, else as
    the anonymous session its first request is given (the cookie is kept). Either way the gateway's
    per-user rate limit applies: raise AGENTLOG_RATE_LIMIT_BURST/_PER_MINUTE on it for a benchmark.
    """

    def __init__(self, base_url: str, collector: EventCollector, api_key: str | None = None) -> None:
        self.url = base_url.rstrip("/") + "/api/chat"
        key = api_key if api_key is not None else os.environ.get("AGENTLOG_API_KEY", "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(timeout=httpx.Timeout(120.0), headers=headers)
        self.collector = collector

    def ask(self, conversation_id: str, question: Question, started: float, timeout: float) -> Answer | None:
        if question.plan is not None:
            raise ValueError("the gateway takes a prompt only: scenarios with a client plan need the direct client")
        sent_wall = time.time() - (time.perf_counter() - started)
        response = self.http.post(self.url, json={"prompt": question.text, "conversationId": conversation_id},
                                  timeout=timeout)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        if response.status_code == 200 and "message" in body:
            return Answer(conversation_id, str(body["turnId"]), str(body.get("outcome")),
                          time.perf_counter() - started, sent_wall, time.time())
        arrived = self.collector.wait(str(body["turnId"]), max(0.0, timeout - (time.perf_counter() - started)))
        if arrived is None:
            return None
        return Answer(conversation_id, str(body["turnId"]), arrived[2], arrived[0] - started, sent_wall, arrived[1])

    def close(self) -> None:
        self.http.close()
