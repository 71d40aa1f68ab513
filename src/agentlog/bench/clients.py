"""How the benchmark asks: straight into Kafka, or through the web gateway's POST /api/chat.

Either way one shared EventWatcher, started before the first question, collects every event of
the run's conversations (for per-stage latency) and wakes the turn waiting for each answer.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from agentlog.bench.scenarios import Question
from agentlog.config import Settings
from agentlog.conversation import ConversationClient, EventWatcher
from agentlog.events.codec import Codec
from agentlog.events.envelope import Envelope, new_id


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


class EventCollector:
    """A thread reading conversation-events: keeps the run's events, records each answer's arrival."""

    def __init__(self, settings: Settings, codec: Codec, conversation_prefix: str) -> None:
        self.prefix = conversation_prefix
        self.watcher = EventWatcher(settings, codec)
        self.events: list[Envelope] = []
        self._answers: dict[str, tuple[float, float, str]] = {}  # turn -> (perf counter, wall, outcome)
        # One event per waiting turn: a shared condition would wake every waiting thread at each answer.
        self._waiting: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-collector", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for event in self.watcher.events(0.2):
                if not event.conversation_id.startswith(self.prefix):
                    continue
                self.events.append(event)
                if event.type == "FinalAnswerSynthesized":
                    with self._lock:
                        self._answers[event.turn_id] = (time.perf_counter(), time.time(),
                                                        str(event.payload.get("outcome")))
                        waiting = self._waiting.get(event.turn_id)
                    if waiting is not None:
                        waiting.set()

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
    """Produces the UserQueryReceived command itself, as `agentlog ask` does."""

    def __init__(self, settings: Settings, codec: Codec, collector: EventCollector) -> None:
        self.client = ConversationClient(settings, codec, source="bench")
        self.collector = collector

    def ask(self, conversation_id: str, question: Question, started: float, timeout: float) -> Answer | None:
        sent_wall = time.time() - (time.perf_counter() - started)
        turn_id = new_id()
        self.client.question(conversation_id, "bench", question.text, turn_id=turn_id, plan=question.plan)
        arrived = self.collector.wait(turn_id, timeout)
        if arrived is None:
            return None
        return Answer(conversation_id, turn_id, arrived[2], arrived[0] - started, sent_wall, arrived[1])

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
