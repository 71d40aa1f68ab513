"""The gateway's FastAPI application: `create_app(settings)` wires the log reader, the command
producer and the read side together, and serves the page from `static/`.

Kafka clients block, so every call into them runs in a worker thread; the event loop only waits on
queues that the single background reader (`live.LiveLog`) fills.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from agentlog.config import Settings, positive_number
from agentlog.conversation import ConversationClient
from agentlog.errors import AgentlogError, InvalidMessageError
from agentlog.events.codec import Codec
from agentlog.events.registry import SchemaRegistry
from agentlog.web.auth import Auth, SessionMiddleware, current_user, session_router
from agentlog.web.limits import BodyLimitMiddleware, LimitConfig, RateLimiter
from agentlog.web.live import LiveLog
from agentlog.web.metrics import metrics_url_from_env
from agentlog.web.reviews import reviews_router
from agentlog.web.views import ConversationIndex, EventStore

STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_CHAT_TIMEOUT_S = 30.0
SOURCE = "gateway"


@dataclass
class Gateway:
    """What the endpoints share; built in the lifespan because every part talks to the broker."""

    settings: Settings
    codec: Codec
    index: ConversationIndex
    live: LiveLog
    client: ConversationClient
    store: EventStore
    chat_timeout: float
    metrics_url: str


def chat_timeout_from_env() -> float:
    return positive_number(os.environ, "AGENTLOG_CHAT_TIMEOUT_S", DEFAULT_CHAT_TIMEOUT_S)


def _connect(settings: Settings, chat_timeout: float, metrics_url: str) -> Gateway:
    """Blocking start-up: read the schemas, start the reader, connect the producer."""
    codec = Codec(SchemaRegistry(settings).read_all() or None)
    index = ConversationIndex()
    live = LiveLog(settings, codec, index.apply)
    live.start()
    try:
        client = ConversationClient(settings, codec, source=SOURCE)
    except BaseException:
        live.close()
        raise
    return Gateway(settings, codec, index, live, client, EventStore(settings, codec, live.partitions), chat_timeout,
                   metrics_url)


def cors_origins_from_env() -> list[str]:
    """AGENTLOG_CORS_ORIGINS, comma-separated; empty (the default) keeps the API same-origin only."""
    return [origin.strip() for origin in os.environ.get("AGENTLOG_CORS_ORIGINS", "").split(",") if origin.strip()]


def cors_options(origins: list[str]) -> dict[str, Any] | None:
    """CORSMiddleware's options for the configured origins (None: same-origin only). `*` allows any
    origin without credentials: with them, every site could act with the visitor's session cookie."""
    if not origins:
        return None
    return {"allow_origins": origins, "allow_credentials": "*" not in origins,
            "allow_methods": ["GET", "POST", "DELETE"], "allow_headers": ["authorization", "content-type"]}


def _install_guards(app: FastAPI, settings: Settings) -> None:
    """Identity, limits and CORS (see web/auth.py and web/limits.py); the outermost runs first."""
    limits = LimitConfig.from_env()
    auth = Auth.from_env(settings)
    app.state.auth, app.state.limits = auth, limits
    app.state.limiter, app.state.address_limiter = RateLimiter(limits), RateLimiter(limits)  # per user, per address
    app.add_middleware(SessionMiddleware, auth=auth)
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_bytes)
    cors = cors_options(cors_origins_from_env())
    if cors is not None:
        app.add_middleware(CORSMiddleware, **cors)


def _error(status: int, message: str, details: object = None) -> JSONResponse:
    body: dict[str, object] = {"error": message}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    """Every error is JSON with an `error` message a person can read, whatever raised it."""

    async def validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = [{"field": ".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]), "message": e["msg"]}
                   for e in exc.errors()]
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        return _error(422, f"invalid request: {summary}", details)

    async def http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        response = _error(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})  # e.g. Retry-After of a 429
        return response

    async def invalid_message(_: Request, exc: Exception) -> JSONResponse:
        return _error(422, f"the command would be invalid: {exc}")

    async def unavailable(_: Request, exc: Exception) -> JSONResponse:
        return _error(503, f"the event log is unavailable: {exc}")

    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(InvalidMessageError, invalid_message)
    app.add_exception_handler(AgentlogError, unavailable)


def create_app(settings: Settings, *, chat_timeout: float | None = None, metrics_url: str | None = None) -> FastAPI:
    """The gateway app. `chat_timeout` (seconds a chat request waits for its answer) defaults to
    AGENTLOG_CHAT_TIMEOUT_S, else 30; `metrics_url` (the metrics service's JSON, proxied at
    /api/metrics) to AGENTLOG_METRICS_URL, else port AGENTLOG_METRICS_PORT (9464) on 127.0.0.1."""
    from agentlog.web.control import router as control_router
    from agentlog.web.routes import router
    from agentlog.web.stream import stream_router

    timeout = chat_timeout_from_env() if chat_timeout is None else chat_timeout
    metrics = metrics_url or metrics_url_from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gateway = await asyncio.to_thread(_connect, settings, timeout, metrics)
        app.state.gateway = gateway
        try:
            yield
        finally:
            await asyncio.to_thread(gateway.live.close)
            await asyncio.to_thread(gateway.client.producer.flush, 5)
            del app.state.gateway  # the last reference: the producer's client goes with it

    app = FastAPI(title="agentlog gateway", version="0.1.0", lifespan=lifespan,
                  description="Ask questions, follow their events as they land in the log, read the log back.")
    _install_error_handlers(app)
    _install_guards(app, settings)
    app.include_router(session_router)
    app.include_router(router)
    app.include_router(reviews_router(settings), dependencies=[Depends(current_user)])
    app.include_router(control_router)
    app.include_router(stream_router(settings))
    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="page")
    return app
