"""A local HTTP server answering GETs from a routing function, for the tools that call web APIs.

`FakeAPI(route)` calls `route(path, query)` for each GET and sends back the `Reply` it returns; a
`Reply(hang=True)` never answers until the server stops, so the client's own timeout ends the call
(no sleeps). `requests` records every (path, query) received.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from llm_fakes import Reply

Route = Callable[[str, dict[str, str]], Reply]


class FakeAPI:
    def __init__(self, route: Route) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                server.requests.append((parts.path, query))
                reply = route(parts.path, query)
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

    def __enter__(self) -> FakeAPI:
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


RATES_PER_USD = {"ILS": 3.71, "EUR": 0.92, "USD": 1.0}


def frankfurter(path: str, query: dict[str, str]) -> Reply:
    """The Frankfurter API's /latest for a few currencies (404 for others, as the real one answers)."""
    source, target = query.get("from", "EUR"), query.get("to", "")
    if path != "/latest" or source not in RATES_PER_USD or target not in RATES_PER_USD:
        return Reply({"message": "not found"}, 404)
    rate = round(RATES_PER_USD[target] / RATES_PER_USD[source], 4)
    return Reply({"amount": 1.0, "base": source, "date": "2026-11-20", "rates": {target: rate}})


def openweathermap(path: str, query: dict[str, str]) -> Reply:
    """OpenWeatherMap's current weather for Haifa; 401 for a wrong key, 404 for other cities."""
    if path != "/data/2.5/weather":
        return Reply({"cod": 404, "message": "Internal error"}, 404)
    if query.get("appid") != "test-key":
        return Reply({"cod": 401, "message": "Invalid API key."}, 401)
    if query.get("q", "").lower() != "haifa":
        return Reply({"cod": "404", "message": "city not found"}, 404)
    return Reply({"coord": {"lon": 34.99, "lat": 32.82}, "weather": [{"id": 500, "main": "Rain",
                  "description": "light rain", "icon": "10d"}], "main": {"temp": 21.3, "feels_like": 20.1,
                  "temp_min": 20.0, "temp_max": 22.0, "pressure": 1012, "humidity": 73}, "wind": {"speed": 4.6},
                  "dt": 1795000000, "sys": {"country": "IL"}, "name": "Haifa", "cod": 200})
