"""The web gateway for tests: the real app in uvicorn on a free port, in a thread of the test process,
and an environment of its own (topic prefix, var/ dir) shared by the tests of one module."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import orjson
import uvicorn

from agentlog.config import Settings
from agentlog.web.app import create_app
from agentlog.web.keys import KeyStore
from helpers import wait_for


class GatewayServer:
    """`with GatewayServer(settings) as gw:` serves the app at gw.url until the block ends."""

    def __init__(self, settings: Settings, chat_timeout: float | None = None) -> None:
        self.settings = settings
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        config = uvicorn.Config(create_app(settings, chat_timeout=chat_timeout), log_level="warning",
                                timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self.client = httpx.Client(base_url=self.url, timeout=60)  # one user: its cookie jar keeps the session
        self._key_clients: list[httpx.Client] = []

    def __enter__(self) -> GatewayServer:
        self.thread.start()
        wait_for(lambda: self.server.started or not self.thread.is_alive(), timeout=60, what="the gateway to start")
        assert self.server.started, "the gateway did not start (see the log above)"
        return self

    def key_client(self, user: str, *, admin: bool = False) -> httpx.Client:
        """A client that sends a new API key of `user` (`agentlog keys create`) as its bearer token."""
        _, key = KeyStore.of(self.settings).create(user, admin=admin)
        client = httpx.Client(base_url=self.url, timeout=60, headers={"authorization": f"Bearer {key}"})
        self._key_clients.append(client)
        return client

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        for client in [self.client, *self._key_clients]:
            client.close()
        self.server.should_exit = True
        self.thread.join(30)
        self.socket.close()


def sse_events(client: httpx.Client, path: str, stop: str, ready: threading.Event | None = None,
               timeout: float = 60) -> Iterator[tuple[str, dict[str, object]]]:
    """(event type, envelope) from an SSE stream until an event of type `stop` (inclusive).

    `ready` is set once the response headers arrived, i.e. the gateway has registered the stream.
    """
    with client.stream("GET", path, timeout=httpx.Timeout(timeout)) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        if ready is not None:
            ready.set()
        kind, data = "", b""
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[len("event: "):]
            elif line.startswith("data: "):
                data = line[len("data: "):].encode()
            elif line == "" and kind:
                yield kind, orjson.loads(data)
                if kind == stop:
                    return
                kind, data = "", b""


CHROMIUM = Path("/usr/bin/chromium")


@contextmanager
def chromium_page(**page_options: Any) -> Iterator[Any]:
    """A page in Debian's headless Chromium (Playwright never downloads a browser here)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser.new_page(**page_options)
        finally:
            browser.close()
