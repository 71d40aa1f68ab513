"""A client for any OpenAI-compatible chat server (POST {base}/chat/completions).

Servers disagree on how to ask for JSON (see reference/local-llm.md), so OPENAI_JSON_MODE picks the
`response_format` form:

- `json_schema` (default, OpenAI's own): `{"type": "json_schema", "json_schema": {"name", "schema"}}`;
- `llama_cpp`: `{"type": "json_object", "schema": {...}}`, llama-cpp-python's grammar-constrained form
  (that server answers the standard form with HTTP 500);
- `json_object`: `{"type": "json_object"}` alone, for servers that know no schemas (the prompt must
  then carry the schema, which the planner's does).

`stream()` asks with `stream: true` and reads the server-sent events (`data: {chunk}` lines, each with
`choices[0].delta.content`, until `data: [DONE]`); `stream_options.include_usage` asks for the token
counts in a last chunk, which servers that ignore it simply leave out.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from agentlog.errors import ConfigurationError
from agentlog.llm.base import ChatMessage, Completion
from agentlog.llm.http import ProviderError, json_object, normalise_url, optional_int, post_json, post_stream
from agentlog.llm.streaming import TextSink, sse_data

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-3.5-turbo"
JSON_MODES = ("json_schema", "llama_cpp", "json_object")


def response_format(mode: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """The `response_format` value that asks a server of this kind for JSON matching `schema`."""
    if mode == "json_schema":
        # strict mode would demand every property be required; plans have optional ones
        return {"type": "json_schema", "json_schema": {"name": "reply", "schema": dict(schema), "strict": False}}
    if mode == "llama_cpp":
        return {"type": "json_object", "schema": dict(schema)}
    return {"type": "json_object"}


def _first_choice(chunk: Mapping[str, Any]) -> Mapping[str, Any]:
    choices = chunk.get("choices")
    return choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}


def _finish_reason(chunk: Mapping[str, Any]) -> Any:
    return _first_choice(chunk).get("finish_reason")


def delta_text(chunk: Mapping[str, Any]) -> str:
    """The text a streamed chunk adds (`choices[0].delta.content`); "" for role-only or usage chunks."""
    delta = _first_choice(chunk).get("delta")
    content = delta.get("content") if isinstance(delta, dict) else None
    return content if isinstance(content, str) else ""


class OpenAIChat:
    """One OpenAI-compatible server and model. `timeout_s` bounds each HTTP call."""

    name = "openai"

    def __init__(self, base_url: str = DEFAULT_BASE_URL, model: str = DEFAULT_MODEL, *, api_key: str | None = None,
                 timeout_s: float = 20.0, json_mode: str = "json_schema") -> None:
        if json_mode not in JSON_MODES:
            raise ConfigurationError(f"OPENAI_JSON_MODE must be one of {', '.join(JSON_MODES)}, not {json_mode!r}")
        self.base_url = normalise_url(base_url)
        self.model = model
        self.json_mode = json_mode
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout_s)

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, timeout_s: float) -> OpenAIChat:
        return cls(env.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL, env.get("OPENAI_MODEL") or DEFAULT_MODEL,
                   api_key=env.get("OPENAI_API_KEY") or None, timeout_s=timeout_s,
                   json_mode=env.get("OPENAI_JSON_MODE") or "json_schema")

    def complete(self, messages: Sequence[ChatMessage], *, json_schema: Mapping[str, Any] | None = None,
                 temperature: float = 0.0, max_tokens: int = 512) -> Completion:
        body: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in messages],
                                "temperature": temperature, "max_tokens": max_tokens}
        if json_schema is not None:
            body["response_format"] = response_format(self.json_mode, json_schema)
        data, latency_ms = post_json(self._client, f"{self.base_url}/chat/completions", body, provider=self.name,
                                     headers=self._headers)
        choices = data.get("choices")
        first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        message = first.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise ProviderError(f"{self.name}: the reply has no choices[0].message.content: {str(data)[:200]}",
                                retryable=False)
        usage = data.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        return Completion(text=content, provider=self.name, model=str(data.get("model") or self.model),
                          latency_ms=latency_ms, prompt_tokens=optional_int(usage.get("prompt_tokens")),
                          completion_tokens=optional_int(usage.get("completion_tokens")))

    def stream(self, messages: Sequence[ChatMessage], sink: TextSink, *, temperature: float = 0.0,
               max_tokens: int = 512) -> Completion:
        body: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in messages],
                                "temperature": temperature, "max_tokens": max_tokens, "stream": True,
                                "stream_options": {"include_usage": True}}
        url = f"{self.base_url}/chat/completions"
        started = time.perf_counter()
        parts: list[str] = []
        model = self.model
        usage: dict[str, Any] = {}
        finished = False
        for data in sse_data(post_stream(self._client, url, body, provider=self.name, headers=self._headers)):
            chunk = json_object(data, self.name)
            if isinstance(chunk.get("error"), dict | str):
                raise ProviderError(f"{self.name}: the stream from {url} failed: {str(chunk['error'])[:300]}",
                                    retryable=False)
            model = str(chunk.get("model") or model)
            usage = chunk["usage"] if isinstance(chunk.get("usage"), dict) else usage
            finished = finished or _finish_reason(chunk) is not None
            text = delta_text(chunk)
            if text:
                parts.append(text)
                sink.write(text)
        if not finished:
            raise ProviderError(f"{self.name}: the stream from {url} ended before its last chunk", retryable=True)
        return Completion(text="".join(parts), provider=self.name, model=model,
                          latency_ms=(time.perf_counter() - started) * 1000.0,
                          prompt_tokens=optional_int(usage.get("prompt_tokens")),
                          completion_tokens=optional_int(usage.get("completion_tokens")))

    def close(self) -> None:
        self._client.close()
