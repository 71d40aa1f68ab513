"""Hostile input to tools (issue 11, item 3): expressions built to hang the math evaluator, HTTP
tools asked to fetch another host or fed huge replies and redirects, and LLM plans naming tools or
arguments outside the catalogue. Each test fails if its defence is removed."""

from __future__ import annotations

import json
import logging
import time

import pytest

from agentlog.events.codec import Codec
from agentlog.events.envelope import command, utc_now
from agentlog.llm.planner import LLMPlanner
from agentlog.services.router.planner import PlanningQuery
from agentlog.services.router.service import route_question
from agentlog.services.runtime import load_tools
from agentlog.tools.exchange import get_exchange_rate
from agentlog.tools.math import evaluate
from agentlog.tools.registry import DEFAULT_REGISTRY, ToolError
from agentlog.tools.weather import get_weather
from fake_http import Reply
from llm_fakes import ScriptedModel
from tool_fakes import FakeAPI, frankfurter, openweathermap

# -- the math evaluator --------------------------------------------------------------------------

# Each is refused with a clear MathError quickly, whatever Python's own eval would do with it.
HOSTILE_EXPRESSIONS = {
    "9**9**9**9": "too large",  # a tower: 9**9 is already beyond the exponent bound
    "9^9^9": "too large",
    "(" * 1_000_000 + "1" + ")" * 1_000_000: "characters long",  # a megabyte of parentheses
    "1" * 5000: "characters long",
    "1e999999999": "magnitude limit",
    "1e9999999999999999999": "out of range",
    "10^999 * 10^999": "magnitude",
    "2^1000 ^ 2": "too large",  # right-associative: 2^(1000^2) has an exponent past the bound
    "(10^99) ^ 1000": "magnitude",
    "(" * 101 + "1" + ")" * 101: "nested too deeply",
    "__import__('os')": "unexpected character",
}


@pytest.mark.parametrize("expression", list(HOSTILE_EXPRESSIONS), ids=lambda e: e[:20])
def test_hostile_expressions_get_a_clear_error_not_a_hung_worker(expression: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ToolError) as failure:
        evaluate(expression)
    assert failure.value.error_type == "MathError" and not failure.value.retryable
    assert HOSTILE_EXPRESSIONS[expression] in failure.value.message
    assert time.perf_counter() - started < 1.0


def test_the_costliest_expressions_within_the_bounds_still_finish_fast() -> None:
    """Every bound at its limit at once: 1000 characters of nested powers and roots."""
    worst = ["sqrt(" * 99 + "2" + ")" * 99, "1.0000000000001^1000*" * 45 + "1", "(0.999^-1000)" + "*1.1^900" * 80]
    for expression in worst:
        started = time.perf_counter()
        try:
            evaluate(expression[:1000])
        except ToolError as error:  # refused is fine: hanging is not
            assert error.error_type == "MathError"
        assert time.perf_counter() - started < 1.0, expression[:40]


# -- HTTP tools ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTLOG_TOOL_HTTP_TIMEOUT_S", "2")


@pytest.mark.parametrize("city", ["http://evil.example/steal", "evil.example:80", "//evil.example/x?q=1#",
                                  "Haifa&appid=other", "../../../etc/passwd", "@evil.example"])
def test_no_argument_can_point_the_weather_tool_at_another_host_or_path(monkeypatch: pytest.MonkeyPatch,
                                                                       city: str) -> None:
    with FakeAPI(openweathermap) as api:
        monkeypatch.setenv("WEATHER_API_KEY", "test-key")
        monkeypatch.setenv("OPENWEATHER_BASE_URL", api.url)
        with pytest.raises(ToolError):  # the fake knows only Haifa
            get_weather(city)
    # the request reached the configured server, at the fixed path, the city only as the q value
    assert api.requests == [("/data/2.5/weather", {"q": city, "appid": "test-key", "units": "metric"})]


@pytest.mark.parametrize(("source", "target"), [("US/", "ILS"), ("USD", "../x"), ("http://e", "ILS"), ("USD", "IL S")])
def test_exchange_codes_cannot_reach_the_url(monkeypatch: pytest.MonkeyPatch, source: str, target: str) -> None:
    with FakeAPI(frankfurter) as api:
        monkeypatch.setenv("EXCHANGE_RATES_URL", api.url)
        with pytest.raises(ToolError) as failure:
            get_exchange_rate(source, target)
    assert failure.value.error_type == "UnknownCurrency" and api.requests == []


def test_redirects_are_not_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeAPI(frankfurter) as elsewhere, \
            FakeAPI(lambda path, query: Reply({}, 302, headers=(("Location", elsewhere.url + "/latest"),))) as api:
        monkeypatch.setenv("EXCHANGE_RATES_URL", api.url)
        with pytest.raises(ToolError) as failure:
            get_exchange_rate("USD", "ILS")
    assert failure.value.error_type == "Rejected" and "redirects are not followed" in failure.value.message
    assert elsewhere.requests == []


def test_a_reply_larger_than_the_cap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    huge = {"amount": 1, "date": "2026-11-20", "rates": {"ILS": 3.7}, "padding": "x" * 3_000_000}
    with FakeAPI(lambda path, query: Reply(huge)) as api:
        monkeypatch.setenv("EXCHANGE_RATES_URL", api.url)
        with pytest.raises(ToolError) as failure:
            get_exchange_rate("USD", "ILS")
        assert failure.value.error_type == "BadReply" and f"larger than {1 << 20} bytes" in failure.value.message
        monkeypatch.setenv("AGENTLOG_TOOL_HTTP_MAX_BYTES", str(4_000_000))  # the cap is configurable
        assert get_exchange_rate("USD", "ILS").value == 3.7


def test_a_hanging_server_ends_in_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTLOG_TOOL_HTTP_TIMEOUT_S", "0.3")
    with FakeAPI(lambda path, query: Reply(hang=True)) as api:
        monkeypatch.setenv("EXCHANGE_RATES_URL", api.url)
        started = time.perf_counter()
        with pytest.raises(ToolError) as failure:
            get_exchange_rate("USD", "ILS")
    assert failure.value.error_type == "Timeout" and time.perf_counter() - started < 5


# -- plans from a model --------------------------------------------------------------------------


def _plan(tool: str, arguments: dict[str, object]) -> str:
    return json.dumps({"steps": [{"id": "s1", "tool": tool, "arguments": arguments, "dependsOn": []}],
                       "finalAnswerSynthesisRequired": True})


HOSTILE_PLANS = [
    _plan("shell", {"command": "rm -rf /"}),  # not a tool
    _plan("getWeather", {"city": "Haifa", "url": "http://evil.example"}),  # an argument outside the schema
    _plan("getWeather", {"city": ["Haifa"]}),  # wrong type
    _plan("calculateMath", {}),  # required argument missing
    json.dumps({"plan": [{"tool": "__import__", "parameters": {}}]}),  # the seed form, same check
]


@pytest.mark.parametrize("reply", HOSTILE_PLANS)
def test_a_model_cannot_plan_outside_the_catalogue_and_the_refusal_is_recorded(
        reply: str, caplog: pytest.LogCaptureFixture) -> None:
    model = ScriptedModel("ollama", [reply] * 4)  # the repair says the same: refused twice, per question
    planner = LLMPlanner([model], load_tools().catalogue())
    with caplog.at_level(logging.INFO, logger="agentlog.llm.planner"):
        planned = planner.plan_audited(PlanningQuery("Weather in Haifa?", "c1", "t1", "en"))
    assert planned.planner != "llm" and planned.llm is None  # the rules planned instead
    for step in planned.plan.steps:
        assert DEFAULT_REGISTRY.get(step.tool) is not None
    assert len(model.calls) == 2
    refusals = [r for r in caplog.records if "rejected" in r.getMessage() or "failed" in r.getMessage()]
    assert any("no valid plan" in r.getMessage() for r in refusals), [r.getMessage() for r in caplog.records]
    assert len(planned.refused) == 2 and all(r.startswith("ollama") for r in planned.refused)
    # ... and recorded in the turn's PlanGenerated, so an audit of the log shows what the model tried
    question = command("UserQueryReceived", conversation_id="c1", turn_id="t1", user_id="u1",
                       payload={"userInput": "Weather in Haifa?"}, source="test")
    _, generated = route_question(planner, question, utc_now())
    assert generated.envelope.payload["refusedPlans"][0].startswith("ollama")
    Codec().encode(generated.envelope)  # valid against event.PlanGenerated
