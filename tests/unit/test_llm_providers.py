"""The Ollama and OpenAI-compatible clients against local servers speaking their wire protocols."""

from __future__ import annotations

import pytest

from agentlog.errors import ConfigurationError
from agentlog.llm.base import ChatMessage
from agentlog.llm.http import ProviderError
from agentlog.llm.ollama import OllamaChat
from agentlog.llm.openai import OpenAIChat
from llm_fakes import Reply, ollama_reply, openai_reply, refused_url, serving

MESSAGES: list[ChatMessage] = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


def test_ollama_chat_request_and_reply() -> None:
    with serving(ollama_reply('{"a": 1}', prompt_tokens=21, completion_tokens=4)) as server:
        completion = OllamaChat(server.url, "llama3").complete(MESSAGES, json_schema=SCHEMA, max_tokens=64)
    assert completion.text == '{"a": 1}'
    assert (completion.provider, completion.model) == ("ollama", "llama3")
    assert (completion.prompt_tokens, completion.completion_tokens) == (21, 4)
    assert completion.latency_ms > 0
    (request,) = server.requests
    assert request.path == "/api/chat"
    assert request.body == {"model": "llama3", "messages": MESSAGES, "stream": False, "format": SCHEMA,
                            "options": {"temperature": 0.0, "num_predict": 64}}
    assert completion.audit() == {"provider": "ollama", "model": "llama3", "latencyMs": round(completion.latency_ms, 3),
                                  "promptTokens": 21, "completionTokens": 4}


def test_ollama_plain_json_format_and_host_without_scheme() -> None:
    with serving(ollama_reply("{}"), ollama_reply("plain text")) as server:
        model = OllamaChat(server.url.removeprefix("http://"), "qwen", json_format="json")
        model.complete(MESSAGES, json_schema=SCHEMA)
        model.complete(MESSAGES)
    assert server.requests[0].body["format"] == "json"
    assert "format" not in server.requests[1].body


@pytest.mark.parametrize(("mode", "expected"), [
    ("json_schema", {"type": "json_schema", "json_schema": {"name": "reply", "schema": SCHEMA, "strict": False}}),
    ("llama_cpp", {"type": "json_object", "schema": SCHEMA}),
    ("json_object", {"type": "json_object"}),
])
def test_openai_json_modes(mode: str, expected: dict[str, object]) -> None:
    with serving(openai_reply('{"a": 2}', prompt_tokens=30, completion_tokens=6)) as server:
        completion = OpenAIChat(server.url + "/v1/", "local", api_key="sk-test", json_mode=mode).complete(
            MESSAGES, json_schema=SCHEMA, temperature=0.5, max_tokens=99)
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer sk-test"
    assert request.body == {"model": "local", "messages": MESSAGES, "temperature": 0.5, "max_tokens": 99,
                            "response_format": expected}
    assert (completion.text, completion.provider, completion.model) == ('{"a": 2}', "openai", "gpt-3.5-turbo")
    assert (completion.prompt_tokens, completion.completion_tokens) == (30, 6)


def test_openai_without_key_or_usage() -> None:
    reply = openai_reply("hello")
    del reply.body["usage"]
    with serving(reply) as server:
        completion = OpenAIChat(server.url, "local").complete(MESSAGES)
    assert "Authorization" not in server.requests[0].headers
    assert "response_format" not in server.requests[0].body
    assert (completion.prompt_tokens, completion.completion_tokens) == (None, None)


@pytest.mark.parametrize(("reply", "retryable"), [
    (Reply({"error": "overloaded"}, 503), True),
    (Reply({"error": "slow down"}, 429), True),
    (Reply({"error": "model not found"}, 404), False),
    (Reply(b"<html>not json</html>"), False),
    (Reply({"model": "llama3", "done": True}), False),
])
def test_ollama_failures_say_whether_to_retry(reply: Reply, retryable: bool) -> None:
    with serving(reply) as server, pytest.raises(ProviderError) as caught:
        OllamaChat(server.url).complete(MESSAGES)
    assert caught.value.retryable is retryable
    assert str(caught.value).startswith("ollama: ")


def test_openai_reply_without_content_is_not_retried() -> None:
    with serving(Reply({"choices": [{"message": {"role": "assistant", "content": None}}]})) as server, \
            pytest.raises(ProviderError) as caught:
        OpenAIChat(server.url).complete(MESSAGES)
    assert not caught.value.retryable


def test_slow_and_down_servers_are_retryable_failures() -> None:
    with serving(Reply(hang=True)) as server, pytest.raises(ProviderError, match="in time") as slow:
        OllamaChat(server.url, timeout_s=0.2).complete(MESSAGES)
    assert slow.value.retryable
    with pytest.raises(ProviderError, match="cannot reach") as down:
        OpenAIChat(refused_url(), timeout_s=1).complete(MESSAGES)
    assert down.value.retryable


def test_unusable_url_is_a_failure_not_a_crash() -> None:
    with pytest.raises(ProviderError, match="not a usable URL") as caught:
        OllamaChat("http://[::1").complete(MESSAGES)
    assert not caught.value.retryable


def test_unknown_json_settings_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="OPENAI_JSON_MODE"):
        OpenAIChat(json_mode="grammar")
    with pytest.raises(ConfigurationError, match="OLLAMA_FORMAT"):
        OllamaChat(json_format="yaml")
