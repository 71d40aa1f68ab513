"""No secret leaks (issue 11, item 5): with a marker value in every secret setting and providers that
echo the key they were sent back in their error messages (as some real ones do), conversations run
through the gateway and the services; then every topic, every log file and every HTTP response is
scanned for the markers.

A new secret setting is added to SECRET_SETTINGS; nothing else in this file needs to change.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from agentlog.kafka.reader import read_range
from agentlog.kafka.topics import admin_client
from agentlog.observability import log_handler
from fake_http import FakeHTTPServer, FakeRequest, Reply
from gateway_server import GatewayServer
from helpers import Stack, wait_for

# Every setting whose value is a secret; each gets a unique marker value for the test.
SECRET_SETTINGS = (
    "OPENAI_API_KEY",
    "WEATHER_API_KEY",
    "AGENTLOG_KAFKA_SASL_PASSWORD",
    "AGENTLOG_KAFKA_SSL_KEY_PASSWORD",
    "AGENTLOG_SESSION_SECRET",
)


class EchoingProvider(FakeHTTPServer):
    """An OpenAI-compatible server and OpenWeatherMap that both refuse the key, quoting it in full."""

    def __init__(self) -> None:
        self.requests: list[FakeRequest] = []
        super().__init__(self.answer)

    def answer(self, request: FakeRequest) -> Reply:
        self.requests.append(request)
        return echo_refusal(request)


def echo_refusal(request: FakeRequest) -> Reply:
    if request.path.endswith("/chat/completions"):
        sent = request.headers.get("Authorization", "")
        return Reply({"error": {"message": f"Incorrect API key provided: {sent}", "type": "invalid_request_error"}},
                     401)
    return Reply({"cod": 401, "message": f"Invalid API key {request.query.get('appid')}"}, 401)


@pytest.fixture
def markers() -> dict[str, str]:
    return {name: f"MARKER{uuid.uuid4().hex}{name}" for name in SECRET_SETTINGS}


@pytest.fixture
def provider() -> Iterator[EchoingProvider]:
    with EchoingProvider() as server:
        yield server


@pytest.fixture
def secret_stack(agentlog_env: dict[str, str], markers: dict[str, str], provider: EchoingProvider,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The services, and this process (the in-process gateway), with the markers and the echoing provider."""
    settings = {**markers, "OPENAI_BASE_URL": provider.url + "/v1", "OPENWEATHER_BASE_URL": provider.url,
                "AGENTLOG_LLM_ATTEMPTS": "1", "AGENTLOG_LLM_TIMEOUT_S": "5", "AGENTLOG_LOG_LEVEL": "DEBUG"}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    with Stack({**agentlog_env, **settings}) as stack:
        stack.start()
        yield stack


def _with_decoded_payloads(raw: bytes) -> bytes:
    """The bytes plus anything base64-encoded inside them (a dead letter keeps the original that way)."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    parts = [raw]
    if isinstance(record, dict):
        for value in record.values():
            if isinstance(value, str) and value:
                with contextlib.suppress(binascii.Error, ValueError):
                    parts.append(base64.b64decode(value, validate=True))
    return b"\n".join(parts)


def topic_contents(stack: Stack) -> dict[str, bytes]:
    """Every message of every topic of this test (keys, values and headers), per topic."""
    topics = [t for t in admin_client(stack.settings).list_topics(timeout=10).topics
              if t.startswith(stack.settings.topic_prefix)]
    contents: dict[str, bytes] = {}
    for topic in topics:
        chunks = []
        for message in read_range(stack.settings, topic):
            key, value = message.key(), message.value()
            chunks += [key or b"", _with_decoded_payloads(value or b"")]
            chunks += [v if isinstance(v, bytes) else str(v).encode() for _, v in message.headers() or []]
        contents[topic] = b"\n".join(chunks)
    return contents


def log_contents(stack: Stack) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in Path(stack.env["AGENTLOG_VAR_DIR"]).rglob("*.log")}


def leaks(haystacks: dict[str, bytes], secrets: dict[str, str]) -> list[str]:
    return [f"{setting} in {where}" for where, data in haystacks.items()
            for setting, secret in secrets.items() if secret.encode() in data]


def test_no_secret_reaches_an_event_a_log_or_a_response(secret_stack: Stack, markers: dict[str, str],
                                                        provider: EchoingProvider) -> None:
    stack = secret_stack
    gateway_log = io.StringIO()
    handler = log_handler("gateway", gateway_log)  # the gateway's own log, as `agentlog gateway` writes it
    logging.getLogger().addHandler(handler)
    responses: dict[str, bytes] = {}
    try:
        with GatewayServer(stack.settings, chat_timeout=20) as gateway:
            admin = gateway.key_client("ops", admin=True)
            admin_key = str(admin.headers["authorization"]).removeprefix("Bearer ")
            conversation = f"sec-{uuid.uuid4().hex[:10]}"
            for prompt in ["What is the weather in Haifa?", "Tell me a joke", "What is 2+3?"]:
                answer = gateway.client.post("/api/chat", json={"prompt": prompt, "conversationId": conversation})
                assert answer.status_code in (200, 202), answer.text  # 202: answered later, see below
                responses[f"POST /api/chat {prompt}"] = answer.content + str(answer.headers).encode()
            for client, path in [(gateway.client, "/"), (gateway.client, "/app.js"),
                                 (gateway.client, "/api/conversations"),
                                 (gateway.client, f"/api/conversations/{conversation}/events"),
                                 (gateway.client, f"/api/conversations/{conversation}/history"),
                                 (gateway.client, "/openapi.json"), (admin, "/api/dead-letters"),
                                 (admin, "/api/health"), (admin, "/api/metrics"), (gateway.client, "/api/nowhere")]:
                response: httpx.Response = client.get(path)
                assert response.status_code < 500, (path, response.text)
                responses[f"GET {path}"] = response.content + str(response.headers).encode()
    finally:
        logging.getLogger().removeHandler(handler)
    wait_for(lambda: sum(e.type == "FinalAnswerSynthesized" for e in stack.conversation_log(conversation)) == 3,
             timeout=120, what="the three answers")
    stack.assert_alive()

    # the hostile provider was really sent both keys (and quoted them back)
    sent = b"".join(r.target.encode() + str(r.headers).encode() for r in provider.requests)
    assert markers["OPENAI_API_KEY"].encode() in sent and markers["WEATHER_API_KEY"].encode() in sent
    events = topic_contents(stack)
    assert any(b"[REDACTED]" in data for data in events.values()), "the echoed key never reached an error message"
    secrets = {**markers, "admin API key": admin_key}
    found = (leaks(events, secrets) + leaks(log_contents(stack), secrets) + leaks(responses, secrets)
             + leaks({"gateway log": gateway_log.getvalue().encode()}, secrets))
    assert found == []
