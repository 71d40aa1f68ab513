"""Local HTTP servers that speak the Ollama and OpenAI chat wire protocols with scripted replies,
and a scripted in-process ChatModel, for the LLM tests.

A scripted `Reply(hang=True)` never answers until the server stops: the client's own timeout is what
ends the call, so a "slow provider" needs no sleeps.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agentlog.llm.base import ChatMessage, Completion
from agentlog.llm.http import ProviderError


@dataclass(frozen=True)
class Reply:
    body: Any = None
    status: int = 200
    hang: bool = False


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class ScriptedServer:
    """Answers each POST with the next scripted reply (HTTP 500 once the script is used up)."""

    def __init__(self, replies: Sequence[Reply]) -> None:
        self.replies = list(replies)
        self.requests: list[Request] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(Request(self.path, dict(self.headers), body))
                    reply = server.replies.pop(0) if server.replies else Reply({"error": "script used up"}, 500)
                if reply.hang:
                    server.release.wait(30)
                    return
                data = json.dumps(reply.body).encode() if not isinstance(reply.body, bytes) else reply.body
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> ScriptedServer:
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


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
