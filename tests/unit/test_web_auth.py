"""The gateway's identity and limit decisions, without a broker: signed session cookies, the session
secret, hashed API keys, who owns a conversation, the stream's user filter, the token bucket, CORS, SSE."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from fastapi import HTTPException
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from agentlog.config import Settings
from agentlog.errors import ConfigurationError
from agentlog.events.envelope import Envelope, command
from agentlog.web.app import cors_options
from agentlog.web.auth import Auth, Identity, conversation_owner, may_use, owner_from_events, session_secret, sign, verify
from agentlog.web.keys import KeyStore, split_key
from agentlog.web.limits import Bucket, LimitConfig, RateLimiter, check_prompt, take
from agentlog.web.live import Listener
from agentlog.web.sse import sse_frame
from agentlog.web.views import ConversationIndex

SECRET = b"s" * 32


def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"AGENTLOG_VAR_DIR": str(tmp_path / "var")})


def asked(user: str, conversation: str = "c1", type_: str = "UserQueryReceived") -> Envelope:
    return command(type_, conversation_id=conversation, turn_id="t", user_id=user, payload={"userInput": "hi"},
                   source="test")


def test_a_signed_session_verifies_and_any_change_or_other_secret_does_not() -> None:
    value = sign("u:alice", SECRET)
    assert verify(value, SECRET) == "u:alice"
    encoded, mac = value.split(".")
    forged = sign("u:mallory", SECRET).split(".")[0] + "." + mac
    assert verify(forged, SECRET) is None, "a payload swapped under an old signature"
    assert verify(value, b"t" * 32) is None, "signed with another secret"
    assert verify(sign("u:alice", b"t" * 32), SECRET) is None
    for garbage in ("", "x", "!!!.???", encoded):
        assert verify(garbage, SECRET) is None


def test_the_session_secret_is_made_once_private_and_shared_unless_configured(tmp_path: Path) -> None:
    where = settings(tmp_path)
    first = session_secret(where, {})
    path = where.var_dir / "gateway" / "session-secret"
    assert len(first) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert session_secret(where, {}) == first, "a second gateway on this var/ signs with the same secret"
    assert session_secret(where, {"AGENTLOG_SESSION_SECRET": "configured"}) == b"configured"
    assert [p.name for p in path.parent.iterdir()] == ["session-secret"], "no draft left behind"


def test_api_keys_are_stored_hashed_verified_and_revocable(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    record, key = store.create("alice", admin=True)
    key_id, secret = split_key(key) or ("", "")
    assert key_id == record.id and secret
    assert secret.encode() not in (tmp_path / "keys.sqlite").read_bytes(), "only the hash is stored"
    with sqlite3.connect(tmp_path / "keys.sqlite") as db:
        assert secret not in repr(db.execute("SELECT * FROM api_keys").fetchall())

    found = store.verify(key)
    assert found is not None and (found.user_id, found.admin) == ("alice", True) and found.last_used
    assert store.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None, "a wrong secret"
    assert store.verify(f"alk_nosuch_{secret}") is None and store.verify("Bearer nonsense") is None
    assert secret not in repr(store.list())

    assert store.revoke(record.id) and not store.revoke(record.id)
    assert store.verify(key) is None and store.get(record.id) is None
    assert store.list()[0].revoked is not None


def test_a_keys_last_use_is_written_at_most_once_a_minute(tmp_path: Path) -> None:
    """Every bearer request verifies its key: writing each time would serialise them on SQLite's lock."""
    store = KeyStore(tmp_path / "gateway" / "keys.sqlite")
    record, key = store.create("alice")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    first = store.verify(key, now=start)
    assert first is not None and first.last_used == "2026-01-01T00:00:00Z"
    again = store.verify(key, now=start + timedelta(seconds=30))
    assert again is not None and again.last_used == first.last_used
    assert store.list()[0].last_used == "2026-01-01T00:00:00Z", "no write within the minute"
    later = store.verify(key, now=start + timedelta(seconds=61))
    assert later is not None and later.last_used == "2026-01-01T00:01:01Z" == store.list()[0].last_used
    assert store.get(record.id) == later


def test_the_caller_is_the_bearer_key_or_the_session_and_nothing_else(tmp_path: Path) -> None:
    auth = Auth(SECRET, KeyStore(tmp_path / "keys.sqlite"))
    record, key = auth.keys.create("bob")
    assert auth.identity(f"Bearer {key}", "u:someone") == Identity("bob", False, record.id), "the key wins"
    assert auth.identity(None, "u:carol") == Identity("carol")
    assert auth.identity(None, f"k:{record.id}") == Identity("bob", False, record.id)
    for authorization, session in ((f"Basic {key}", None), ("Bearer alk_x_y", "u:carol"), (None, None),
                                   (None, "u:"), (None, "k:nosuch")):
        with pytest.raises(HTTPException) as refused:
            auth.identity(authorization, session)
        assert refused.value.status_code == 401
    auth.keys.revoke(record.id)
    with pytest.raises(HTTPException, match="revoked"):
        auth.identity(None, f"k:{record.id}")
    cookie = auth.set_cookie("u:carol")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert "Secure" in Auth(SECRET, auth.keys, secure_cookie=True).set_cookie("u:carol")


def test_the_owner_is_whoever_asked_first_and_only_they_may_use_it() -> None:
    events = [asked("alice", type_="PlanGenerated"), asked("alice"), asked("bob")]
    assert owner_from_events(events) == "alice" and owner_from_events(events[:1]) is None
    assert may_use("alice", Identity("alice"), new_allowed=False)
    assert not may_use("alice", Identity("bob"), new_allowed=True)
    assert not may_use("alice", Identity("bob", admin=True), new_allowed=True), "admin is not an owner"
    assert may_use(None, Identity("bob"), new_allowed=True) and not may_use(None, Identity("bob"), new_allowed=False)


def test_a_users_stream_listener_takes_only_that_users_events() -> None:
    loop = asyncio.new_event_loop()
    try:
        mine = Listener("c1", None, False, loop, user_id="alice")
        anyone = Listener("c1", None, False, loop)
        assert mine.matches(asked("alice"), live=True) and not mine.matches(asked("bob"), live=True)
        assert not mine.matches(asked("alice", conversation="c2"), live=True)
        assert anyone.matches(asked("bob"), live=True)
    finally:
        loop.close()


def test_the_token_bucket_allows_a_burst_then_one_per_refill() -> None:
    bucket = Bucket(tokens=2, updated=0.0)
    assert take(bucket, 0.0, 0.5, 2) == 0 and take(bucket, 0.0, 0.5, 2) == 0
    assert take(bucket, 0.0, 0.5, 2) == pytest.approx(2.0), "one token in 2 s at 0.5/s"
    assert take(bucket, 1.0, 0.5, 2) == pytest.approx(1.0)
    assert take(bucket, 2.0, 0.5, 2) == 0
    assert take(bucket, 100.0, 0.5, 2) == 0 and bucket.tokens == 1, "never more than the burst"


def test_the_rate_limiter_counts_per_user_and_says_when_to_retry() -> None:
    limiter = RateLimiter(LimitConfig(rate_per_minute=6, rate_burst=1))
    assert limiter.wait("alice", now=0) == 0 and limiter.wait("bob", now=0) == 0
    assert limiter.wait("alice", now=1) == pytest.approx(9.0)
    with pytest.raises(HTTPException) as refused:
        limiter.admit("alice")
        limiter.admit("alice")
    assert refused.value.status_code == 429 and refused.value.headers is not None
    assert int(refused.value.headers["Retry-After"]) >= 1


def test_limits_come_from_the_environment_and_refuse_nonsense() -> None:
    config = LimitConfig.from_env({"AGENTLOG_MAX_PROMPT_CHARS": "10", "AGENTLOG_RATE_LIMIT_BURST": "3"})
    assert (config.max_prompt_chars, config.rate_burst, config.max_body_bytes) == (10, 3, 65_536)
    check_prompt("x" * 10, config)
    with pytest.raises(HTTPException) as refused:
        check_prompt("x" * 11, config)
    assert refused.value.status_code == 413 and "AGENTLOG_MAX_PROMPT_CHARS" in str(refused.value.detail)
    for bad in ("0", "-1", "many", "0.5", "1024.5"):  # a fraction of a byte is a typo, not 0 or 1024
        with pytest.raises(ConfigurationError, match="AGENTLOG_MAX_BODY_BYTES"):
            LimitConfig.from_env({"AGENTLOG_MAX_BODY_BYTES": bad})
    with pytest.raises(ConfigurationError, match="AGENTLOG_MAX_PROMPT_CHARS must be a whole number"):
        LimitConfig.from_env({"AGENTLOG_MAX_PROMPT_CHARS": "0.5"})


class CountingStore:
    """The gateway's EventStore's one method, counting its partition reads."""

    def __init__(self, events: list[Envelope]) -> None:
        self.events, self.reads = events, 0

    def events_of(self, conversation_id: str) -> list[Envelope]:
        self.reads += 1
        return [e for e in self.events if e.conversation_id == conversation_id]


def test_an_unknown_conversation_costs_a_partition_read_only_while_the_index_catches_up() -> None:
    index, caught_up, store = ConversationIndex(), threading.Event(), CountingStore([asked("alice", "old")])
    gateway = cast(Any, SimpleNamespace(index=index, live=SimpleNamespace(caught_up=caught_up), store=store))
    owner, events = asyncio.run(conversation_owner(gateway, "old"))
    assert (owner, store.reads) == ("alice", 1) and events == store.events, "the route reuses what was read"
    caught_up.set()
    for unknown in ("new-1", "new-2", "old"):  # "old" is not in this index: once caught up, the index rules
        assert asyncio.run(conversation_owner(gateway, unknown)) == (None, None)
    index.apply(asked("bob", "c2"))
    assert asyncio.run(conversation_owner(gateway, "c2")) == ("bob", None)
    assert store.reads == 1, "no partition read once the reader has caught up"


def test_cors_with_any_origin_never_allows_credentials() -> None:
    assert cors_options([]) is None
    explicit = cors_options(["http://a.example"])
    assert explicit is not None and explicit["allow_credentials"] is True
    options = cors_options(["*"])
    assert options is not None and options["allow_credentials"] is False

    async def hello(_: object) -> PlainTextResponse:
        return PlainTextResponse("hi")

    app = Starlette(routes=[Route("/", hello)], middleware=[Middleware(CORSMiddleware, **options)])
    with TestClient(app) as client:
        answer = client.get("/", headers={"origin": "http://evil.example", "cookie": "agentlog_session=x"})
    assert answer.headers.get("access-control-allow-origin") != "http://evil.example"
    assert "access-control-allow-credentials" not in answer.headers


def test_sse_frames_carry_an_optional_id_the_event_type_and_json_data() -> None:
    assert sse_frame("AnswerDelta", {"seq": 0}) == b'event: AnswerDelta\ndata: {"seq":0}\n\n'
    assert sse_frame("X", [1], "e1") == b"id: e1\nevent: X\ndata: [1]\n\n"
