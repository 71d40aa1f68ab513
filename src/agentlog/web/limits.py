"""The gateway's limits: request body size, prompt length and a per-user rate of commands.

Each is configurable by an environment variable; a request over a limit gets a JSON error that
names the limit and the variable (413), or how long to wait (429 with Retry-After).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import orjson
from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentlog.config import positive_number, positive_whole_number

TRACKED_USERS = 10_000  # buckets kept in memory; the least recently used user's goes first


@dataclass(frozen=True)
class LimitConfig:
    max_body_bytes: int = 65_536
    max_prompt_chars: int = 4000
    rate_per_minute: float = 30.0
    rate_burst: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LimitConfig:
        """AGENTLOG_MAX_BODY_BYTES, AGENTLOG_MAX_PROMPT_CHARS, AGENTLOG_RATE_LIMIT_PER_MINUTE, AGENTLOG_RATE_LIMIT_BURST."""
        env = os.environ if env is None else env
        return cls(positive_whole_number(env, "AGENTLOG_MAX_BODY_BYTES", cls.max_body_bytes),
                   positive_whole_number(env, "AGENTLOG_MAX_PROMPT_CHARS", cls.max_prompt_chars),
                   positive_number(env, "AGENTLOG_RATE_LIMIT_PER_MINUTE", cls.rate_per_minute),
                   positive_number(env, "AGENTLOG_RATE_LIMIT_BURST", cls.rate_burst))


@dataclass
class Bucket:
    tokens: float
    updated: float


def take(bucket: Bucket, now: float, per_second: float, burst: float) -> float:
    """Take one token from the bucket (refilled at `per_second` up to `burst`): 0 when taken, else
    the seconds until one is there."""
    bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * per_second)
    bucket.updated = now
    if bucket.tokens >= 1:
        bucket.tokens -= 1
        return 0.0
    return (1 - bucket.tokens) / per_second


class RateLimiter:
    """One token bucket per user, shared by the threads and the event loop of one gateway process."""

    def __init__(self, config: LimitConfig) -> None:
        self.per_second = config.rate_per_minute / 60
        self.burst = config.rate_burst
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def wait(self, user_id: str, now: float | None = None) -> float:
        """0 when the user may go on now, else the seconds to wait."""
        moment = time.monotonic() if now is None else now
        with self._lock:
            bucket = self._buckets.pop(user_id, None) or Bucket(self.burst, moment)
            self._buckets[user_id] = bucket
            if len(self._buckets) > TRACKED_USERS:
                self._buckets.popitem(last=False)
            return take(bucket, moment, self.per_second, self.burst)

    def admit(self, user_id: str) -> None:
        """Raise 429 with Retry-After when the user is over the rate."""
        wait = self.wait(user_id)
        if wait > 0:
            seconds = math.ceil(wait)
            raise HTTPException(429, f"too many requests: at most {self.burst:g} at once and "
                                     f"{self.per_second * 60:g} a minute per user (AGENTLOG_RATE_LIMIT_BURST, "
                                     f"AGENTLOG_RATE_LIMIT_PER_MINUTE); retry in {seconds} s",
                                headers={"Retry-After": str(seconds)})


def check_prompt(prompt: str, config: LimitConfig) -> None:
    if len(prompt) > config.max_prompt_chars:
        raise HTTPException(413, f"the prompt has {len(prompt)} characters; at most {config.max_prompt_chars} "
                                 "are accepted (AGENTLOG_MAX_PROMPT_CHARS)")


def body_too_large(size: int, limit: int) -> str:
    return (f"the request body has {size} bytes or more; at most {limit} are accepted "
            "(AGENTLOG_MAX_BODY_BYTES)")


class BodyLimitMiddleware:
    """413 for a body over the limit: at once from Content-Length, else while it is read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            body = orjson.dumps({"error": body_too_large(int(declared), self.max_bytes)})
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
            await send({"type": "http.response.body", "body": body})
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, body_too_large(received, self.max_bytes))
            return message

        await self.app(scope, counted, send)
