"""A client for Ollama's chat API (POST /api/chat): one JSON reply, or NDJSON lines when streaming.

JSON output goes through `format`: the JSON schema itself (Ollama 0.5+ constrains decoding to it) or
the string "json" for older servers (OLLAMA_FORMAT=json). Tokens come from `prompt_eval_count` and
`eval_count`. `stream()` sets `stream: true` and reads one JSON object per line, each with a piece
of `message.content`, the last with `done: true` and the token counts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from agentlog.errors import ConfigurationError
from agentlog.llm.base import ChatMessage, Completion
from agentlog.llm.http import ProviderError, json_object, normalise_url, optional_int, post_json, post_stream
from agentlog.llm.streaming import TextSink

DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_MODEL = "llama3"
FORMATS = ("schema", "json")


class OllamaChat:
    """One Ollama server and model. `timeout_s` bounds each HTTP call (connect and each read)."""

    name = "ollama"

    def __init__(self, host: str = DEFAULT_HOST, model: str = DEFAULT_MODEL, *, timeout_s: float = 20.0,
                 json_format: str = "schema") -> None:
        if json_format not in FORMATS:
            raise ConfigurationError(f"OLLAMA_FORMAT must be one of {', '.join(FORMATS)}, not {json_format!r}")
        self.host = normalise_url(host)
        self.model = model
        self.json_format = json_format
        self._client = httpx.Client(timeout=timeout_s)

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, timeout_s: float) -> OllamaChat:
        return cls(env.get("OLLAMA_HOST") or DEFAULT_HOST, env.get("OLLAMA_MODEL") or DEFAULT_MODEL,
                   timeout_s=timeout_s, json_format=env.get("OLLAMA_FORMAT") or "schema")

    def complete(self, messages: Sequence[ChatMessage], *, json_schema: Mapping[str, Any] | None = None,
                 temperature: float = 0.0, max_tokens: int = 512) -> Completion:
        body: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in messages], "stream": False,
                                "options": {"temperature": temperature, "num_predict": max_tokens}}
        if json_schema is not None:
            body["format"] = dict(json_schema) if self.json_format == "schema" else "json"
        data, latency_ms = post_json(self._client, f"{self.host}/api/chat", body, provider=self.name)
        message = data.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise ProviderError(f"{self.name}: the reply has no message.content: {str(data)[:200]}", retryable=False)
        return Completion(text=content, provider=self.name, model=str(data.get("model") or self.model),
                          latency_ms=latency_ms, prompt_tokens=optional_int(data.get("prompt_eval_count")),
                          completion_tokens=optional_int(data.get("eval_count")))

    def stream(self, messages: Sequence[ChatMessage], sink: TextSink, *, temperature: float = 0.0,
               max_tokens: int = 512) -> Completion:
        body: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in messages], "stream": True,
                                "options": {"temperature": temperature, "num_predict": max_tokens}}
        url = f"{self.host}/api/chat"
        started = time.perf_counter()
        parts: list[str] = []
        last: dict[str, Any] = {}
        for line in post_stream(self._client, url, body, provider=self.name):
            if not line.strip():
                continue
            last = json_object(line, self.name)
            if "error" in last:
                raise ProviderError(f"{self.name}: the stream from {url} failed: {str(last['error'])[:300]}",
                                    retryable=False)
            message = last.get("message")
            text = message.get("content") if isinstance(message, dict) else None
            if isinstance(text, str) and text:
                parts.append(text)
                sink.write(text)
            if last.get("done") is True:
                break
        else:
            raise ProviderError(f"{self.name}: the stream from {url} ended before its done line", retryable=True)
        return Completion(text="".join(parts), provider=self.name, model=str(last.get("model") or self.model),
                          latency_ms=(time.perf_counter() - started) * 1000.0,
                          prompt_tokens=optional_int(last.get("prompt_eval_count")),
                          completion_tokens=optional_int(last.get("eval_count")))

    def close(self) -> None:
        self._client.close()
