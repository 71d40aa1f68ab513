"""The gateway's identity and isolation against a real broker: session cookies, API keys, owners of
conversations (read, stream, reset, continue), admin views, CORS, body/prompt limits, the rate limit.

Only the router runs: it records each question as UserQueryReceived, which is all ownership needs;
chats answer 202 at once (short chat timeout) instead of waiting for an answer.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from agentlog.web.auth import COOKIE, sign
from agentlog.web.keys import KeyStore
from gateway_server import GatewayServer, sse_events
from helpers import Stack, isolated_env, wait_for

ALLOWED_ORIGIN = "http://allowed.example"
STRICT_ENV = {"AGENTLOG_MAX_BODY_BYTES": "2048", "AGENTLOG_MAX_PROMPT_CHARS": "100",
              "AGENTLOG_RATE_LIMIT_BURST": "2", "AGENTLOG_RATE_LIMIT_PER_MINUTE": "1",
              "AGENTLOG_CORS_ORIGINS": ALLOWED_ORIGIN}


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(isolated_env(dict(os.environ), kafka_bootstrap, tmp_path_factory.mktemp("auth"))) as stack:
        stack.start("router")
        yield stack


@pytest.fixture(scope="module")
def gateway(stack: Stack) -> Iterator[GatewayServer]:
    with GatewayServer(stack.settings, chat_timeout=0.5) as server:
        yield server


ACCEPTED = (200, 202)  # answered within the gateway's 0.5 s, or accepted and still running


@pytest.fixture(scope="module")
def strict(stack: Stack) -> Iterator[GatewayServer]:
    """A gateway with small limits and one allowed cross-origin (read from the environment at start)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in STRICT_ENV.items():
            patch.setenv(name, value)
        server = GatewayServer(stack.settings, chat_timeout=0.5)
    with server:
        yield server


@pytest.fixture
def browser(gateway: GatewayServer) -> Iterator[httpx.Client]:
    """A new user, as a browser is one: a cookie jar and no key."""
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        yield client


@pytest.fixture
def other(gateway: GatewayServer) -> Iterator[httpx.Client]:
    """Another new user."""
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        yield client


def user_of(client: httpx.Client) -> str:
    user: str = client.get("/api/session").json()["userId"]
    return user


def new_id() -> str:
    return f"web-{uuid.uuid4().hex}"


def start_conversation(client: httpx.Client, conversation_id: str | None = None) -> str:
    """Ask in a conversation and wait until its question is in the log; its id."""
    body: dict[str, object] = {"prompt": "What is 2+3?"}
    if conversation_id:
        body["conversationId"] = conversation_id
    response = client.post("/api/chat", json=body)
    assert response.status_code in (200, 202), response.text
    started: str = response.json()["conversationId"]
    wait_for(lambda: client.get(f"/api/conversations/{started}/events").status_code == 200, timeout=60,
             what="the question in the log")
    return started


def test_the_first_visit_gets_a_signed_http_only_cookie_that_keeps_the_user(gateway: GatewayServer,
                                                                               browser: httpx.Client) -> None:
    page = browser.get("/")
    cookie = page.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    me = user_of(browser)
    assert re.fullmatch(r"user-[0-9a-f]{16}", me) and user_of(browser) == me
    assert "set-cookie" not in browser.get("/api/session").headers, "a known session is not reissued"
    with httpx.Client(base_url=gateway.url) as stranger:
        assert user_of(stranger) != me
    forged = sign(f"u:{me}", b"not the gateway's secret")
    with httpx.Client(base_url=gateway.url, cookies={COOKIE: forged}) as forger:
        assert user_of(forger) != me, "a cookie the gateway did not sign is ignored"


def test_only_the_owner_can_read_stream_reset_or_continue_a_conversation(browser: httpx.Client,
                                                                         other: httpx.Client) -> None:
    conversation_id = start_conversation(browser, new_id())
    owner, intruder = user_of(browser), user_of(other)
    path = f"/api/conversations/{conversation_id}"
    for method, where in (("GET", "/events"), ("GET", "/history"), ("GET", "/stream"), ("POST", "/reset"),
                          ("GET", "/answer-stream"), ("POST", "/turns/t1/control")):
        response = other.request(method, path + where, json={"command": "cancel"} if method == "POST" else None)
        assert response.status_code == 404, (where, response.text)
        assert conversation_id in response.json()["error"]
    taken = other.post("/api/chat", json={"prompt": "mine now", "conversationId": conversation_id})
    assert taken.status_code == 404, "not 403: that would confirm that the id exists"
    unknown = new_id()
    nobody = other.get(f"/api/conversations/{unknown}/events").json()["error"]
    assert taken.json()["error"] == nobody.replace(unknown, conversation_id), "the answer for an id nobody used"
    assert conversation_id not in [c["conversationId"] for c in other.get("/api/conversations").json()["conversations"]]
    assert other.get("/api/conversations", params={"userId": owner}).status_code == 403
    posing = other.post("/api/chat", json={"prompt": "hi", "userId": owner})
    assert posing.status_code == 403, "the user id comes from the session, not the body"

    events = browser.get(path + "/events").json()["events"]
    assert {e["userId"] for e in events} == {owner} and intruder != owner
    assert conversation_id in [c["conversationId"] for c in browser.get("/api/conversations").json()["conversations"]]
    assert browser.post(path + "/reset").status_code == 202


def test_a_stream_opened_before_a_conversation_exists_never_shows_another_users_turn(
        stack: Stack, browser: httpx.Client, other: httpx.Client) -> None:
    """`other` follows an id before its owner asks under it; the owner's turn must not reach them. Their
    own later question (sent straight to the log) is the marker: the stream keeps log order."""
    conversation_id, intruder = new_id(), user_of(other)
    ready = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        frames = pool.submit(lambda: next(sse_events(other, f"/api/conversations/{conversation_id}/stream",
                                                     stop="UserQueryReceived", ready=ready)))
        assert ready.wait(30), "the stream did not open"
        start_conversation(browser, conversation_id)
        marker = stack.client.question(conversation_id, intruder, "marker")
        kind, first = frames.result(60)
    assert (kind, first["userId"], first["turnId"]) == ("UserQueryReceived", intruder, marker.turn_id)


def test_new_conversation_ids_are_random_and_unguessable(browser: httpx.Client) -> None:
    made = {browser.post("/api/chat", json={"prompt": "What is 1+1?"}).json()["conversationId"] for _ in range(2)}
    assert len(made) == 2 and all(re.fullmatch(r"conv-[0-9a-f]{32}", c) for c in made), made


def test_dead_letters_metrics_and_topics_need_an_admin_key(gateway: GatewayServer, browser: httpx.Client) -> None:
    user = gateway.key_client("alice")
    admin = gateway.key_client("ops", admin=True)
    for client in (browser, user):
        for path in ("/api/dead-letters", "/api/metrics"):
            refused = client.get(path)
            assert refused.status_code == 403 and "admin API key" in refused.json()["error"], path
        health = client.get("/api/health")
        assert health.status_code == 200 and "topics" not in health.json()
    assert admin.get("/api/dead-letters").json()["total"] == 0
    assert admin.get("/api/health").json()["topics"]
    assert admin.get("/api/session").json() == {"userId": "ops", "admin": True}
    with httpx.Client(base_url=gateway.url, headers={"authorization": "Bearer alk_forged_secret"}) as forged:
        assert forged.get("/api/conversations").status_code == 401


def test_an_admin_key_signs_the_page_in_and_revoking_it_signs_it_out(gateway: GatewayServer,
                                                                        browser: httpx.Client) -> None:
    assert browser.post("/api/session").status_code == 400, "a cookie alone cannot sign in"
    admin = gateway.key_client("ops", admin=True)
    signed_in = browser.post("/api/session", headers={"authorization": admin.headers["authorization"]})
    assert signed_in.status_code == 200 and "HttpOnly" in signed_in.headers["set-cookie"]
    assert browser.get("/api/dead-letters").status_code == 200, "the cookie now carries the admin key"
    key_id = admin.headers["authorization"].split("_")[1]
    assert KeyStore.of(gateway.settings).revoke(key_id)
    signed_out = browser.get("/api/dead-letters")
    assert signed_out.status_code == 403 and "set-cookie" in signed_out.headers, "a revoked key's session starts over"
    assert re.fullmatch(r"user-[0-9a-f]{16}", user_of(browser)), "as a new anonymous user, not 401 for ever"
    assert admin.get("/api/dead-letters").status_code == 401


def test_the_keys_cli_shows_a_key_once_lists_it_without_the_key_and_revokes_it(stack: Stack,
                                                                                gateway: GatewayServer) -> None:
    def agentlog(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agentlog", "keys", *args], env=stack.env, text=True,
                              capture_output=True, timeout=60, check=True)

    key = agentlog("create", "--user", "carol").stdout.strip()
    assert re.fullmatch(r"alk_[0-9a-f]{12}_[\w-]{43}", key), key
    key_id = key.split("_")[1]
    listed = agentlog("list").stdout
    assert key_id in listed and "carol" in listed and key.split("_", 2)[2] not in listed
    with httpx.Client(base_url=gateway.url, headers={"authorization": f"Bearer {key}"}) as carol:
        assert carol.get("/api/session").json() == {"userId": "carol", "admin": False}
        assert "last used never" not in agentlog("list").stdout.split(key_id)[1].splitlines()[0]
        assert agentlog("revoke", key_id).stdout.strip() == f"revoked {key_id}"
        assert carol.get("/api/session").status_code == 401
    assert "revoked" in agentlog("list").stdout


def test_without_anonymous_sessions_a_caller_needs_a_key(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTLOG_ANONYMOUS_SESSIONS", "0")
    with GatewayServer(stack.settings) as closed:
        refused = closed.client.get("/api/conversations")
        assert refused.status_code == 401 and "set-cookie" not in refused.headers
        assert refused.headers["www-authenticate"] == "Bearer" and "API key" in refused.json()["error"]
        assert closed.key_client("dave").get("/api/conversations").status_code == 200
        probe = closed.client.get("/api/health")
        assert probe.status_code == 200 and "topics" not in probe.json(), "a probe needs no key; topics do"


def test_bodies_and_prompts_over_the_limits_get_413_with_the_limit_named(strict: GatewayServer) -> None:
    declared = strict.client.post("/api/chat", json={"prompt": "x" * 3000})
    assert declared.status_code == 413 and "AGENTLOG_MAX_BODY_BYTES" in declared.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while the body is read
        yield b'{"prompt": "'
        yield b"x" * 3000
        yield b'"}'

    streamed = strict.client.post("/api/chat", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and "AGENTLOG_MAX_BODY_BYTES" in streamed.json()["error"]
    long_prompt = strict.client.post("/api/chat", json={"prompt": "x" * 101})
    assert long_prompt.status_code == 413
    assert long_prompt.json()["error"] == ("the prompt has 101 characters; at most 100 are accepted "
                                           "(AGENTLOG_MAX_PROMPT_CHARS)")


def test_a_user_over_the_rate_gets_429_with_retry_after_and_others_do_not(strict: GatewayServer) -> None:
    """Key users, as anonymous ones on this one address also share its bucket (next test)."""
    eager, calm = strict.key_client("eager"), strict.key_client("calm")
    answers = [eager.post("/api/chat", json={"prompt": f"What is {n}+1?"}) for n in range(3)]
    assert all(a.status_code in ACCEPTED for a in answers[:2]), [a.status_code for a in answers]
    assert answers[2].status_code == 429 and int(answers[2].headers["retry-after"]) >= 1
    assert "AGENTLOG_RATE_LIMIT_PER_MINUTE" in answers[2].json()["error"]
    assert calm.post("/api/chat", json={"prompt": "What is 9+1?"}).status_code in ACCEPTED


def test_dropping_the_cookie_does_not_escape_the_rate_limit(strict: GatewayServer) -> None:
    """Each request without a cookie is a new anonymous user; their address pays all the same."""
    codes = []
    for n in range(3):  # the address's burst is 2
        with httpx.Client(base_url=strict.url, timeout=60) as fresh:
            codes.append(fresh.post("/api/chat", json={"prompt": f"What is {n}+2?"}).status_code)
    assert codes[-1] == 429 and set(codes) <= {*ACCEPTED, 429}, codes
    assert strict.key_client("keyed").post("/api/chat", json={"prompt": "What is 3+2?"}).status_code in ACCEPTED


def test_cross_origin_requests_are_refused_unless_the_origin_is_configured(gateway: GatewayServer,
                                                                           strict: GatewayServer) -> None:
    preflight = {"access-control-request-method": "POST", "access-control-request-headers": "content-type"}
    for server, origin, allowed in ((gateway, ALLOWED_ORIGIN, False), (strict, "http://evil.example", False),
                                    (strict, ALLOWED_ORIGIN, True)):
        asked = server.client.options("/api/chat", headers={"origin": origin, **preflight})
        read = server.client.get("/api/conversations", headers={"origin": origin})
        for response in (asked, read):
            assert (response.headers.get("access-control-allow-origin") == origin) is allowed, (origin, server.url)
