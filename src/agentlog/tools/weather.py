"""The getWeather tool: current weather from OpenWeatherMap, or an honest "not configured".

`GET {OPENWEATHER_BASE_URL}/data/2.5/weather?q=CITY&appid=KEY&units=metric` with WEATHER_API_KEY.
Without a key the tool fails with error_type NotConfigured and says how to configure it: weather
is a fact about now, and there is no offline source for it that would not be invented.
An unknown city (HTTP 404) fails for good; timeouts and 5xx may succeed on a later attempt.
"""

from __future__ import annotations

import os
from typing import Any

from agentlog.tools.http_client import get_json
from agentlog.tools.registry import ToolError, ToolOutput, tool

DEFAULT_BASE_URL = "https://api.openweathermap.org"


def _number(section: Any, key: str) -> float | None:
    value = section.get(key) if isinstance(section, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def describe(city: str, reply: dict[str, Any]) -> ToolOutput:
    """Turn an OpenWeatherMap current-weather reply into the tool's result."""
    main = reply.get("main")
    temperature = _number(main, "temp")
    if temperature is None:
        raise ToolError(f"weather: the reply for {city!r} carries no temperature", error_type="BadReply")
    conditions = reply.get("weather")
    first = conditions[0] if isinstance(conditions, list) and conditions and isinstance(conditions[0], dict) else {}
    description = str(first.get("description", "")).strip()
    feels_like = _number(main, "feels_like")
    name = str(reply.get("name") or city)
    country = reply.get("sys", {}).get("country") if isinstance(reply.get("sys"), dict) else None
    text = f"{name}: {temperature:.1f} °C"
    if description:
        text += f", {description}"
    if feels_like is not None:
        text += f" (feels like {feels_like:.1f} °C)"
    data = {"city": name, "country": country, "temperatureC": temperature, "feelsLikeC": feels_like,
            "description": description or None, "humidityPercent": _number(main, "humidity"),
            "pressureHpa": _number(main, "pressure"), "windSpeedMs": _number(reply.get("wind"), "speed"),
            "observedAt": reply.get("dt"), "source": "OpenWeatherMap current weather"}
    return ToolOutput(value=temperature, text=text, data=data)


@tool("getWeather", "Current weather of a city (temperature in °C, conditions, feels-like), from "
      "OpenWeatherMap; needs WEATHER_API_KEY. Give the city's English name, e.g. Haifa.")
def get_weather(city: str) -> ToolOutput:
    key = os.environ.get("WEATHER_API_KEY", "").strip()
    if not key:
        raise ToolError("no weather provider is configured: set WEATHER_API_KEY (an OpenWeatherMap API key) "
                        "for the tool workers to get current weather", error_type="NotConfigured")
    base = os.environ.get("OPENWEATHER_BASE_URL", "").strip() or DEFAULT_BASE_URL
    reply = get_json(base.rstrip("/") + "/data/2.5/weather", params={"q": city, "appid": key, "units": "metric"},
                     service="weather", not_found=f"weather: OpenWeatherMap knows no city named {city!r}")
    return describe(city, reply)
