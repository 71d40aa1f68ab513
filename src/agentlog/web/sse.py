"""Server-sent events, framed one way for every gateway stream (the log's events, the answer deltas).

A stream reads its listener's queue until None (the gateway's reader stopped), sends a comment
when idle so that proxies keep the connection open, and forgets its listener however it ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import orjson
from fastapi.responses import StreamingResponse

KEEPALIVE_S = 10.0
RETRY_MS = 2000
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no caching, no proxy buffering

Item = TypeVar("Item")


def sse_frame(event: str, data: object, event_id: str | None = None) -> bytes:
    """One SSE message: optional `id:`, `event:` and the JSON `data:`."""
    head = b"" if event_id is None else b"id: %s\n" % event_id.encode()
    return head + b"event: %s\ndata: %s\n\n" % (event.encode(), orjson.dumps(data))


async def _frames(queue: asyncio.Queue[Item | None], frame: Callable[[Item], bytes | None],
                  done: Callable[[], None]) -> AsyncIterator[bytes]:
    try:
        yield b"retry: %d\n\n" % RETRY_MS
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if item is None:
                return
            framed = frame(item)
            if framed is not None:
                yield framed
    finally:
        done()


def sse_response(queue: asyncio.Queue[Item | None], frame: Callable[[Item], bytes | None],
                 done: Callable[[], None]) -> StreamingResponse:
    """A text/event-stream of `frame(item)` per queued item (None from `frame`: not for this caller);
    `done` runs when the stream ends or the client goes away."""
    return StreamingResponse(_frames(queue, frame, done), media_type="text/event-stream", headers=HEADERS)
