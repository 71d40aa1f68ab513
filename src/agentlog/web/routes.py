"""The gateway's HTTP endpoints under /api (the page at / is static files).

A chat request registers its listener before it produces its command, then waits on that listener
only: the answer reaches exactly the gateway instance that asked, through its one shared reader.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, field_validator

from agentlog.events.envelope import Envelope, new_id
from agentlog.kafka.dlq import read_dead_letters
from agentlog.kafka.topics import TOPICS, admin_client
from agentlog.web.app import Gateway
from agentlog.web.auth import (
    ID_PATTERN,
    Admin,
    Commanding,
    ConversationId,
    MaybeUser,
    Owner,
    OwnerOrNew,
    User,
    check_access,
    not_found,
    same_user,
)
from agentlog.web.limits import check_prompt
from agentlog.web.live import Listener
from agentlog.web.metrics import NOT_RUNNING, MetricsUnavailable, fetch_snapshot, panel_of
from agentlog.web.sse import sse_frame, sse_response
from agentlog.web.views import history_from_events, history_of

ORIGINAL_TEXT_LIMIT = 4000

router = APIRouter(prefix="/api")


class ChatRequest(BaseModel):
    prompt: str = Field(min_length=1, description="the question (at most AGENTLOG_MAX_PROMPT_CHARS, else 413)")
    conversationId: str | None = Field(None, pattern=ID_PATTERN,
                                       description="yours, or a new one you made (unguessable); new if absent")
    userId: str | None = Field(None, min_length=1, max_length=128,
                               description="deprecated: the user comes from the session or the API key")
    plan: dict[str, Any] | None = Field(None, description="run this plan instead of the planner's (advanced)")

    @field_validator("prompt")
    @classmethod
    def not_blank(cls, prompt: str) -> str:
        if not prompt.strip():
            raise ValueError("the prompt is blank")
        return prompt


class ChatAnswer(BaseModel):
    conversationId: str
    turnId: str
    message: str
    outcome: str


class ChatPending(BaseModel):
    conversationId: str
    turnId: str
    status: str = "pending"
    stream: str


class ResetRequest(BaseModel):
    userId: str | None = Field(None, min_length=1, max_length=128)


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def _answer(listener: Listener, timeout: float) -> Envelope | None:
    """The turn's FinalAnswerSynthesized, or None at the deadline (or when the gateway stops)."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            event = await asyncio.wait_for(listener.queue.get(), remaining)
        except TimeoutError:
            return None
        if event is None:
            return None
        if event.type == "FinalAnswerSynthesized":
            return event
    return None


@router.post("/chat", response_model=ChatAnswer, status_code=200,
             responses={202: {"model": ChatPending, "description": "no answer yet: follow the stream"}})
async def chat(request: Request, body: ChatRequest, identity: Commanding) -> Any:
    """Ask a question; wait up to AGENTLOG_CHAT_TIMEOUT_S for its answer, else 202 with the stream."""
    gateway = _gateway(request)
    check_prompt(body.prompt, request.app.state.limits)
    same_user(body.userId, identity)
    conversation_id = body.conversationId or f"conv-{secrets.token_hex(16)}"
    if body.conversationId:
        await check_access(request, conversation_id, identity, new_allowed=True)
    turn_id = new_id()
    listener = gateway.live.listen(conversation_id, turn_id, user_id=identity.user_id)
    try:
        await asyncio.to_thread(gateway.client.question, conversation_id, identity.user_id, body.prompt,
                                turn_id=turn_id, plan=body.plan)
        answer = await _answer(listener, gateway.chat_timeout)
    finally:
        gateway.live.forget(listener)
    if answer is None:
        pending = ChatPending(conversationId=conversation_id, turnId=turn_id,
                              stream=f"/api/conversations/{conversation_id}/stream")
        return JSONResponse(pending.model_dump(), status_code=202)
    return ChatAnswer(conversationId=conversation_id, turnId=turn_id, message=answer.payload["message"],
                      outcome=answer.payload["outcome"])


@router.get("/conversations")
async def conversations(request: Request, identity: User,
                        userId: Annotated[str | None, Query(max_length=128)] = None,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """The caller's conversations, most recently active first; `complete` is false while the index
    still reads the log."""
    gateway = _gateway(request)
    same_user(userId, identity)
    return {"conversations": [s.to_json() for s in gateway.index.summaries(identity.user_id, limit)],
            "complete": gateway.live.caught_up.is_set()}


@router.get("/conversations/{conversation_id}/events")
async def conversation_events(request: Request, conversation_id: ConversationId, access: Owner) -> dict[str, Any]:
    """Every event of the conversation in log order (read from the one partition its key maps to)."""
    events = access.events or await asyncio.to_thread(_gateway(request).store.events_of, conversation_id)
    if not events:
        raise not_found(conversation_id)
    return {"conversationId": conversation_id, "events": [e.to_json() for e in events]}


@router.get("/conversations/{conversation_id}/history")
async def conversation_history(request: Request, conversation_id: ConversationId, access: Owner) -> dict[str, Any]:
    """Question/answer pairs since the last reset (an unanswered turn has answer null)."""
    if access.events:  # the owner check has just read them
        history: list[dict[str, Any]] | None = history_from_events(access.events)
    else:
        history = await asyncio.to_thread(history_of, _gateway(request).store, conversation_id)
    if history is None:
        raise not_found(conversation_id)
    return {"conversationId": conversation_id, "turns": history}


@router.get("/conversations/{conversation_id}/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def conversation_stream(request: Request, conversation_id: ConversationId,
                              identity: OwnerOrNew) -> StreamingResponse:
    """Server-sent events: each new event of the conversation as it lands (`event: <type>`, envelope JSON).

    Any well-formed id that is not another user's is accepted, known or not: the page opens the
    stream of a brand-new conversation before sending its first question, so that it misses none of
    its events. Only the caller's own events are sent, whoever later asks under that id.
    """
    live = _gateway(request).live
    listener = live.listen(conversation_id, live_only=True, user_id=identity.user_id)
    return sse_response(listener.queue, lambda event: sse_frame(event.type, event.to_json(), event.id),
                        lambda: live.forget(listener))


@router.post("/conversations/{conversation_id}/reset", status_code=202)
async def reset(request: Request, conversation_id: ConversationId, _: Owner, identity: Commanding,
                body: Annotated[ResetRequest | None, Body()] = None) -> dict[str, Any]:
    """Ask the router to reset the conversation's history (a UserControl command); it records UserHistoryReset."""
    gateway = _gateway(request)
    same_user(body.userId if body else None, identity)
    sent = await asyncio.to_thread(gateway.client.reset, conversation_id, identity.user_id)
    return {"conversationId": conversation_id, "turnId": sent.turn_id, "status": "accepted"}


def _dead_letters(gateway: Gateway, limit: int) -> dict[str, Any]:
    letters = list(read_dead_letters(gateway.settings))
    shown = []
    for letter in reversed(letters[-limit:]):
        record = {k: v for k, v in letter.record.items() if k not in ("originalKey", "originalValue")}
        key = letter.original_key
        shown.append({"offset": letter.offset, **record,
                      "key": None if key is None else key.decode("utf-8", errors="replace"),
                      "original": letter.original_text(ORIGINAL_TEXT_LIMIT)})
    return {"total": len(letters), "deadLetters": shown}


@router.get("/dead-letters")
async def dead_letters(request: Request, _: Admin,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict[str, Any]:
    """The dead-letter queue, newest first: why, from where, and the original message as text (admin key)."""
    return await asyncio.to_thread(_dead_letters, _gateway(request), limit)


def _health(gateway: Gateway, admin: bool) -> tuple[bool, dict[str, Any]]:
    try:
        existing = set(admin_client(gateway.settings).list_topics(timeout=5).topics)
    except Exception as error:  # any failure to reach the broker is the answer, not a crash
        return False, {"status": "unavailable", "broker": False, "error": str(error)}
    topics = {spec.name: gateway.settings.topic(spec.name) in existing for spec in TOPICS}
    healthy = all(topics.values())
    body: dict[str, Any] = {"status": "ok" if healthy else "degraded", "broker": True,
                            "reader": {"caughtUp": gateway.live.caught_up.is_set(), "error": gateway.live.failure}}
    if admin:  # which topics exist is an operator's business
        body["topics"] = topics
    return healthy, body


@router.get("/health", responses={503: {"description": "the broker is unreachable or a topic is missing"}})
async def health(request: Request, identity: MaybeUser) -> JSONResponse:
    """Whether the broker answers and every topic exists (503 when not); the topics for an admin.
    Anyone may ask (a probe has no session), so that AGENTLOG_ANONYMOUS_SESSIONS=0 does not fail it."""
    healthy, body = await asyncio.to_thread(_health, _gateway(request), identity is not None and identity.admin)
    return JSONResponse(body, status_code=200 if healthy else 503)


@router.get("/metrics", responses={404: {"description": "the metrics service is not running"},
                                   502: {"description": "the metrics service answered something unusable"}})
async def metrics(request: Request, _: Admin) -> JSONResponse:
    """Headline numbers for the page's panel, from the metrics service (`agentlog service metrics`):
    conversations, turns by outcome, events, throughput, turn latency (s), consumer lag. 404 when
    that service is not running, so that the page shows the panel only when metrics run."""
    url = _gateway(request).metrics_url
    try:
        snapshot = await fetch_snapshot(url)
    except MetricsUnavailable as error:
        if error.not_running:
            return JSONResponse({"error": NOT_RUNNING, "details": {"url": url, "reason": str(error)}}, status_code=404)
        return JSONResponse({"error": str(error)}, status_code=502)
    return JSONResponse(panel_of(snapshot))
