"""Local HTTP servers that speak the Ollama and OpenAI chat wire protocols with scripted replies,
and a scripted in-process ChatModel, for the LLM tests.

A scripted `Reply(hang=True)` never answers until the server stops: the client's own timeout is what
ends the call, so a "slow provider" needs no sleeps.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from agentlog.llm.base import ChatMessage, Completion
from agentlog.llm.http import ProviderError
from fake_http import FakeHTTPServer, FakeRequest, Reply


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class ScriptedServer(FakeHTTPServer):
    """Answers each POST with the next scripted reply (HTTP 500 once the script is used up)."""

    def __init__(self, replies: Sequence[Reply]) -> None:
        self.replies = list(replies)
        self.requests: list[Request] = []
        super().__init__(self._next_reply, methods=("POST",))

    def _next_reply(self, request: FakeRequest) -> Reply:
        self.requests.append(Request(request.target, request.headers, json.loads(request.body or b"{}")))
        return self.replies.pop(0) if self.replies else Reply({"error": "script used up"}, 500)


@contextmanager
def serving(*replies: Reply) -> Iterator[ScriptedServer]:
    with ScriptedServer(replies) as server:
        yield server


def refused_url() -> str:
    """A local URL where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def ollama_reply(content: str, *, prompt_tokens: int = 11, completion_tokens: int = 7, model: str = "llama3") -> Reply:
    return Reply({"model": model, "created_at": "2025-01-01T00:00:00Z",
                  "message": {"role": "assistant", "content": content}, "done": True, "done_reason": "stop",
                  "prompt_eval_count": prompt_tokens, "eval_count": completion_tokens})


def openai_reply(content: str, *, prompt_tokens: int = 13, completion_tokens: int = 5,
                 model: str = "gpt-3.5-turbo") -> Reply:
    return Reply({"id": "chatcmpl-1", "object": "chat.completion", "model": model,
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                               "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens}})


class ScriptedModel:
    """An in-process ChatModel: each call returns the next text or raises the next error."""

    def __init__(self, name: str, script: Sequence[str | ProviderError]) -> None:
        self.name = name
        self.script = list(script)
        self.calls: list[list[ChatMessage]] = []

    def complete(self, messages: Sequence[ChatMessage], *, json_schema: Mapping[str, Any] | None = None,
                 temperature: float = 0.0, max_tokens: int = 512) -> Completion:
        self.calls.append(list(messages))
        step = self.script.pop(0)
        if isinstance(step, ProviderError):
            raise step
        return Completion(step, self.name, "m", 1.0, 3, 2)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
