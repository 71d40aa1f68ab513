"""A local HTTP server that streams a chat reply in the OpenAI (SSE) or Ollama (NDJSON) wire format,
piece by piece, optionally holding the rest back until the test opens a gate: a test can then look
at what a reader shows while the model is still "writing", without any sleep."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler
from typing import Any

from fake_http import LoopbackServer
from helpers import ALL_SERVICES, Stack


def openai_lines(pieces: Sequence[str], model: str) -> list[bytes]:
    chunks = [{"model": model, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    chunks += [{"model": model, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}
               for p in pieces]
    chunks += [{"model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
               {"model": model, "choices": [], "usage": {"prompt_tokens": 21, "completion_tokens": len(pieces)}}]
    head, *rest = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks]
    return [head + rest[0], *rest[1:-2], rest[-2] + rest[-1] + b"data: [DONE]\n\n"]


def ollama_lines(pieces: Sequence[str], model: str) -> list[bytes]:
    lines = [{"model": model, "message": {"role": "assistant", "content": p}, "done": False} for p in pieces]
    lines.append({"model": model, "message": {"role": "assistant", "content": ""}, "done": True,
                  "prompt_eval_count": 17, "eval_count": len(pieces)})
    encoded = [(json.dumps(line) + "\n").encode() for line in lines]
    return [*encoded[:-2], encoded[-2] + encoded[-1]]


class StreamingServer(LoopbackServer):
    """`with StreamingServer("openai", ["Hel", "lo"]) as server:` streams at server.url.

    Each POST gets the pieces one write at a time. `gate`: after `hold_after` pieces the server waits
    for `gate.set()` before the rest. `drop_after`: the server closes the connection after that many
    pieces, once (a provider dying mid-answer); the next request gets the whole reply.
    """

    def __init__(self, kind: str, pieces: Sequence[str], *, model: str = "fake-model",
                 gate: threading.Event | None = None, hold_after: int = 1, drop_after: int | None = None) -> None:
        lines = openai_lines(pieces, model) if kind == "openai" else ollama_lines(pieces, model)
        super().__init__()
        self.requests: list[dict[str, Any]] = []
        server = self
        drops = [drop_after] if drop_after is not None else []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                server.requests.append(json.loads(self.rfile.read(length) or b"{}"))
                drop = drops.pop() if drops else None
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream" if kind == "openai" else "application/x-ndjson")
                self.end_headers()
                try:
                    for index, line in enumerate(lines):
                        if drop is not None and index == drop:
                            return  # the connection closes without the rest
                        if gate is not None and index == hold_after:
                            while not gate.wait(0.05) and not server.stopping.is_set():
                                pass
                        self.wfile.write(line)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._listen(Handler)


class RecordingSink:
    """A TextSink that keeps every call, and the text a reader would show now."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def write(self, text: str) -> None:
        self.calls.append(("write", text))

    def restart(self) -> None:
        self.calls.append(("restart", ""))

    @property
    def text(self) -> str:
        shown = ""
        for call, text in self.calls:
            shown = "" if call == "restart" else shown + text
        return shown

    @property
    def writes(self) -> list[str]:
        return [text for call, text in self.calls if call == "write"]


def start_with_model_synthesis(stack: Stack, model_url: str) -> None:
    """All services offline except synthesis, which writes answers with the model at `model_url`.
    Only synthesis knows the model, so the router must not answer local turns itself (router/inline.py)."""
    stack.start(*(s for s in ALL_SERVICES if s not in ("synthesis", "router")))
    stack.start("router", extra_env={"AGENTLOG_INLINE_TURNS": "0"})
    stack.start("synthesis", extra_env={"OPENAI_BASE_URL": model_url, "AGENTLOG_LLM_TIMEOUT_S": "120"})
