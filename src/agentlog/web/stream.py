"""Answers as they are written: the gateway's reader of `answer-stream` and its SSE endpoint.

The synthesis worker (and generalChat when a model answers) sends AnswerDelta records while it
writes (services/synthesis/deltas.py). One reader per gateway process follows every partition from
its end (deltas are worth something only while their turn runs) and hands each delta to the
streams open on its conversation. The page appends `text` while `seq` counts up, starts over at
`seq` 0, and replaces the whole by the recorded FinalAnswerSynthesized when that arrives.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_END, Message, TopicPartition
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import StreamingResponse

from agentlog.config import Settings
from agentlog.errors import InvalidMessageError
from agentlog.events.codec import Codec
from agentlog.kafka.topics import ANSWER_STREAM
from agentlog.services.synthesis.deltas import SUBJECT as DELTA_SUBJECT
from agentlog.services.synthesis.deltas import AnswerDelta
from agentlog.web.auth import ConversationId, OwnerOrNew
from agentlog.web.live import TopicTail
from agentlog.web.sse import sse_frame, sse_response

log = logging.getLogger(__name__)

UNKNOWN_USER = ""  # a tool's deltas: the tool does not know the user (only the conversation's owner sees them)


_RECORDS = Codec()  # the packaged record.AnswerDelta schema, the one the publisher validates against


def delta_from_json(raw: bytes | None) -> AnswerDelta | None:
    """A well-formed delta, or None for anything else (deltas are best-effort: a bad one is skipped)."""
    try:
        return AnswerDelta.from_json(_RECORDS.decode_record(DELTA_SUBJECT, raw))
    except InvalidMessageError:
        return None


def visible_to(delta: AnswerDelta, user_id: str, owner: str | None) -> bool:
    """Whether a stream opened by `user_id` may show this delta (`owner`: the conversation's owner)."""
    return delta.user_id == user_id or (delta.user_id == UNKNOWN_USER and owner == user_id)


@dataclass(eq=False)
class DeltaListener:
    conversation_id: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[AnswerDelta | None] = field(default_factory=asyncio.Queue)

    def deliver(self, delta: AnswerDelta | None) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, delta)


class AnswerStreamLog(TopicTail):
    """The process's single reader of answer-stream; start() once, close() at shutdown."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, settings.topic(ANSWER_STREAM), "agentlog-gateway-deltas")
        self._listeners: dict[str, set[DeltaListener]] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        """Assign every partition from its end (blocking: call it off the event loop)."""
        consumer, partitions = self._open()
        self._follow(consumer, [TopicPartition(self.topic, p, OFFSET_END) for p in partitions])

    def listen(self, conversation_id: str) -> DeltaListener:
        listener = DeltaListener(conversation_id, asyncio.get_running_loop())
        with self._lock:
            self._listeners.setdefault(conversation_id, set()).add(listener)
        return listener

    def forget(self, listener: DeltaListener) -> None:
        with self._lock:
            listeners = self._listeners.get(listener.conversation_id, set())
            listeners.discard(listener)
            if not listeners:
                self._listeners.pop(listener.conversation_id, None)

    def close(self) -> None:
        self._stop()
        with self._lock:
            listeners = [listener for group in self._listeners.values() for listener in group]
            self._listeners.clear()
        for listener in listeners:
            listener.deliver(None)

    def _on_message(self, message: Message) -> None:
        delta = delta_from_json(message.value())
        if delta is None:
            return
        with self._lock:
            targets = list(self._listeners.get(delta.conversation_id, ()))
        for listener in targets:
            listener.deliver(delta)


def stream_router(settings: Settings) -> APIRouter:
    """The answer-stream endpoint, with its reader started and stopped by the app's lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        reader = AnswerStreamLog(settings)
        await asyncio.to_thread(reader.start)
        app.state.answer_stream = reader
        try:
            yield
        finally:
            await asyncio.to_thread(reader.close)

    router = APIRouter(prefix="/api", lifespan=lifespan)

    @router.get("/conversations/{conversation_id}/answer-stream", response_class=StreamingResponse,
                responses={200: {"content": {"text/event-stream": {}}}})
    async def answer_stream(request: Request, conversation_id: ConversationId, identity: OwnerOrNew) -> StreamingResponse:
        """Server-sent events: the conversation's answers as they are written (`event: AnswerDelta`,
        data {conversationId, turnId, seq, text, done}); best-effort, the recorded answer is the truth."""
        reader: AnswerStreamLog = request.app.state.answer_stream
        index = request.app.state.gateway.index
        listener = reader.listen(conversation_id)

        def frame(delta: AnswerDelta) -> bytes | None:
            if not visible_to(delta, identity.user_id, index.owner_of(conversation_id)):
                return None
            return sse_frame("AnswerDelta", _public(delta))

        return sse_response(listener.queue, frame, lambda: reader.forget(listener))

    return router


def _public(delta: AnswerDelta) -> dict[str, Any]:
    return {k: v for k, v in delta.to_json().items() if k != "userId"}
