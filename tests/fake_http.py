"""A threaded local HTTP server answering each request with the `Reply` a routing function returns,
the base of the LLM and web-API fakes (llm_fakes, tool_fakes).

A `Reply(hang=True)` never answers until the server stops: the client's own timeout is what ends the
call, so a "slow provider" needs no sleeps.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Reply:
    body: Any = None
    status: int = 200
    hang: bool = False
    headers: tuple[tuple[str, str], ...] = ()  # extra response headers, e.g. a redirect's Location


@dataclass(frozen=True)
class FakeRequest:
    method: str
    target: str  # the request line's path, query string included
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        """The query parameters, the last value of each."""
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.target).query).items()}


Route = Callable[[FakeRequest], Reply]


class LoopbackServer:
    """Serves a request handler class on a free loopback port, in a thread, while in its `with`
    block; `stopping` is set on exit, so a handler holding a reply back lets go."""

    def __init__(self) -> None:
        self.stopping = threading.Event()

    def _listen(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> Self:
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeHTTPServer(LoopbackServer):
    """`with FakeHTTPServer(route) as server:` serves at server.url; `route` is called (one call at a
    time) for each request whose method is in `methods`, the others get HTTP 501."""

    def __init__(self, route: Route, methods: Collection[str] = ("GET", "POST")) -> None:
        super().__init__()
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def _answer(self, method: str) -> None:
                if method not in methods:
                    self.send_error(501, f"Unsupported method ({method!r})")
                    return
                length = int(self.headers.get("Content-Length", "0"))
                request = FakeRequest(method, self.path, dict(self.headers), self.rfile.read(length) if length else b"")
                with lock:
                    reply = route(request)
                if reply.hang:
                    server.stopping.wait(30)
                    return
                data = json.dumps(reply.body).encode() if not isinstance(reply.body, bytes) else reply.body
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in reply.headers:
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._listen(Handler)
