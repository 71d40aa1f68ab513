"""A local HTTP server answering GETs from a routing function, for the tools that call web APIs.

`FakeAPI(route)` calls `route(path, query)` for each GET and sends back the `Reply` it returns; a
`Reply(hang=True)` never answers until the server stops, so the client's own timeout ends the call
(no sleeps). `requests` records every (path, query) received.
"""

from __future__ import annotations

from collections.abc import Callable

from fake_http import FakeHTTPServer, FakeRequest, Reply

Route = Callable[[str, dict[str, str]], Reply]


class FakeAPI(FakeHTTPServer):
    def __init__(self, route: Route) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []

        def answer(request: FakeRequest) -> Reply:
            path, query = request.path, request.query
            self.requests.append((path, query))
            return route(path, query)

        super().__init__(answer, methods=("GET",))


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
