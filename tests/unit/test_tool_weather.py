"""getWeather: OpenWeatherMap when a key is set, an honest NotConfigured without one."""

from __future__ import annotations

import pytest

from agentlog.tools.registry import ToolError
from agentlog.tools.weather import get_weather
from llm_fakes import Reply
from tool_fakes import FakeAPI, openweathermap


@pytest.fixture(autouse=True)
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTLOG_TOOL_HTTP_TIMEOUT_S", "0.5")


def test_without_a_key_it_says_how_to_configure_and_invents_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEATHER_API_KEY", raising=False)
    with pytest.raises(ToolError) as failure:
        get_weather("Haifa")
    assert failure.value.error_type == "NotConfigured" and not failure.value.retryable
    assert "WEATHER_API_KEY" in failure.value.message and "no weather provider" in failure.value.message


def configure(monkeypatch: pytest.MonkeyPatch, url: str, key: str = "test-key") -> None:
    monkeypatch.setenv("WEATHER_API_KEY", key)
    monkeypatch.setenv("OPENWEATHER_BASE_URL", url)


def test_current_weather_from_the_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeAPI(openweathermap) as api:
        configure(monkeypatch, api.url)
        out = get_weather("Haifa")
    assert api.requests == [("/data/2.5/weather", {"q": "Haifa", "appid": "test-key", "units": "metric"})]
    assert out.value == 21.3
    assert out.text == "Haifa: 21.3 °C, light rain (feels like 20.1 °C)"
    assert out.data["humidityPercent"] == 73 and out.data["country"] == "IL"


def test_unknown_city_fails_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeAPI(openweathermap) as api:
        configure(monkeypatch, api.url)
        with pytest.raises(ToolError) as failure:
            get_weather("Atlantis")
    assert not failure.value.retryable and "Atlantis" in failure.value.message


def test_a_rejected_key_fails_for_good_without_showing_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeAPI(openweathermap) as api:
        configure(monkeypatch, api.url, key="wrong-secret")
        with pytest.raises(ToolError) as failure:
            get_weather("Haifa")
    assert not failure.value.retryable and "Invalid API key" in failure.value.message
    assert "wrong-secret" not in failure.value.message


@pytest.mark.parametrize("reply", [Reply({"message": "busy"}, 502), Reply({"message": "slow down"}, 429),
                                   Reply(hang=True)])
def test_provider_trouble_is_retryable(monkeypatch: pytest.MonkeyPatch, reply: Reply) -> None:
    with FakeAPI(lambda path, query: reply) as api:
        configure(monkeypatch, api.url)
        with pytest.raises(ToolError) as failure:
            get_weather("Haifa")
    assert failure.value.retryable
