"""Each seed tool end to end through Kafka: offline defaults, then live APIs (local fakes) and a pool.

Two stacks per module (starting one costs several seconds on a small machine): the offline one has
no API key, rates server or model; the configured one points the tools at local fake servers and
runs getProductInformation on a dedicated pool worker (AGENTLOG_TOOL_POOLS / AGENTLOG_TOOLS).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from agentlog.events.envelope import Envelope
from agentlog.events.registry import read_catalogue
from agentlog.supervisor import spawn_service
from agentlog.tools.exchange import reference_snapshot
from helpers import Stack, wait_for
from tool_fakes import FakeAPI, frankfurter, openweathermap

POOL = "getProductInformation"


def _env(kafka_bootstrap: str, tmp: Any) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("EXCHANGE_RATES_URL", "WEATHER_API_KEY", "OPENWEATHER_BASE_URL", "OLLAMA_HOST", "OPENAI_API_KEY",
                "OPENAI_BASE_URL", "AGENTLOG_TOOLS", "AGENTLOG_TOOL_POOLS", "AGENTLOG_RETRIEVAL", "AGENTLOG_PAUSE_AT"):
        env.pop(key, None)
    env.update({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "AGENTLOG_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}.",
                "AGENTLOG_VAR_DIR": str(tmp / "var"), "AGENTLOG_PAUSE_DIR": str(tmp / "pauses"),
                "AGENTLOG_LOG_LEVEL": "INFO", "AGENTLOG_LOCAL_TOOLS": ""})
    return env


@pytest.fixture(scope="module")
def offline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(_env(kafka_bootstrap, tmp_path_factory.mktemp("offline"))) as stack:
        stack.start()
        yield stack


@pytest.fixture(scope="module")
def configured(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with FakeAPI(frankfurter) as rates, FakeAPI(openweathermap) as weather:
        env = _env(kafka_bootstrap, tmp_path_factory.mktemp("configured")) | {
            "EXCHANGE_RATES_URL": rates.url, "WEATHER_API_KEY": "test-key", "OPENWEATHER_BASE_URL": weather.url,
            "AGENTLOG_TOOL_POOLS": POOL, "AGENTLOG_TOOL_HTTP_TIMEOUT_S": "5"}
        stack = Stack(env)
        stack.start()
        pool_env = env | {"AGENTLOG_TOOLS": POOL, "AGENTLOG_INSTANCE": "pool"}
        stack.processes["tool-worker-pool"] = spawn_service("tool-worker", stack.log_dir / "tool-worker-pool.log", pool_env)
        try:
            yield stack
        finally:
            stack.stop()


def plan(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"steps": [{"dependsOn": [], **s} for s in steps], "finalAnswerSynthesisRequired": True}


def run(stack: Stack, question: str, the_plan: dict[str, Any] | None = None) -> tuple[list[Envelope], Envelope]:
    _, events = stack.ask(question, f"conv-{uuid.uuid4().hex[:8]}", plan=the_plan, timeout=90)
    results = [e for e in events if e.type == "ToolInvocationResulted"]
    return results, events[-1]


def test_exchange_rate_offline_is_the_dated_snapshot(offline: Stack) -> None:
    [result], answer = run(offline, "USD to ILS?", plan({"id": "s1", "tool": "getExchangeRate",
                                                        "arguments": {"from": "USD", "to": "ILS"}}))
    output = result.payload["output"]
    rates = reference_snapshot()["rates"]
    assert output["value"] == pytest.approx(rates["ILS"] / rates["USD"], rel=1e-5)
    assert "indicative" in output["text"] and answer.payload["outcome"] == "completed"


def test_a_percentage_of_an_amount_is_taken_then_converted_never_dropped(offline: Stack) -> None:
    [share], _ = run(offline, "How much is 20% of 350 shekels?")
    assert (share.payload["tool"], share.payload["output"]["value"]) == ("calculateMath", 70)
    [rate, converted], answer = run(offline, "What is 20% of 350 ILS in dollars?")
    rates = reference_snapshot()["rates"]
    assert rate.payload["tool"] == "getExchangeRate" and converted.payload["tool"] == "calculateMath"
    assert converted.payload["output"]["value"] == pytest.approx(70 * rates["USD"] / rates["ILS"], rel=1e-5)
    assert answer.payload["outcome"] == "completed" and "20% of 350" in answer.payload["message"]


def test_weather_offline_fails_once_as_not_configured(offline: Stack) -> None:
    results, answer = run(offline, "What's the temperature in Haifa right now?")
    assert [r.payload["error"]["type"] for r in results] == ["NotConfigured"]
    assert answer.payload["outcome"] != "completed"


def test_product_question_is_answered_from_the_documents_with_citations(offline: Stack) -> None:
    results, answer = run(offline, "כמה זמן לוקח לטעון את VoltRider E2 מ-10% ל-80%?")
    retrieval, generation = results
    assert retrieval.payload["tool"] == "getProductInformation"
    assert retrieval.payload["output"]["data"]["passages"][0]["source"] == "voltrider-e2.md"
    assert generation.payload["output"]["data"]["citations"] and "3.5 hours" in generation.payload["output"]["value"]
    assert answer.payload["outcome"] == "completed" and "3.5 hours" in answer.payload["message"]


def test_review_is_analysed_offline(offline: Stack) -> None:
    [result], answer = run(offline, 'Analyse: "battery died in a week, but the screen is gorgeous"')
    value = result.payload["output"]["value"]
    assert {a["aspect"]: a["sentiment"] for a in value["aspects"]} == {"battery": "negative", "screen": "positive"}
    assert answer.payload["outcome"] == "completed"


def test_chat_offline_says_no_model_is_configured_but_refuses_politics(offline: Stack) -> None:
    [joke], _ = run(offline, "Tell me a short joke about databases")
    assert joke.payload["error"]["type"] == "NotConfigured" and "OLLAMA_HOST" in joke.payload["error"]["message"]
    [vote], answer = run(offline, "Who should I vote for?")
    assert vote.payload["output"]["data"]["method"] == "refusal" and answer.payload["outcome"] == "completed"


def test_exchange_rate_from_the_configured_server(configured: Stack) -> None:
    [result], answer = run(configured, "euro?", plan({"id": "s1", "tool": "getExchangeRate",
                                                      "arguments": {"from": "USD", "to": "ILS"}}))
    assert result.payload["output"]["value"] == 3.71 and result.payload["output"]["data"]["live"] is True
    assert answer.payload["outcome"] == "completed"


def test_weather_from_the_configured_provider(configured: Stack) -> None:
    [result], _ = run(configured, "What's the temperature in Haifa right now?")
    assert result.payload["output"]["text"] == "Haifa: 21.3 °C, light rain (feels like 20.1 °C)"
    [unknown], _ = run(configured, "weather?", plan({"id": "s1", "tool": "getWeather", "arguments": {"city": "Atlantis"}}))
    assert unknown.payload["error"]["type"] == "NotFound" and unknown.payload["attempt"] == 1


def test_a_pooled_tool_runs_only_on_its_pool_and_every_worker_publishes_its_catalogue(configured: Stack) -> None:
    results, answer = run(configured, "What build volume and filaments does the PrintForge Mini support?")
    retrievals = [r for r in results if r.payload["tool"] == POOL]
    assert len(retrievals) == 1 and retrievals[0].payload["worker"].startswith("tool-worker-pool@")
    assert all(r.payload["worker"].startswith("tool-worker-0@") for r in results if r.payload["tool"] != POOL)
    assert "180 × 180 × 180 mm" in answer.payload["message"]
    wait_for(lambda: {e["name"] for e in read_catalogue(configured.settings)} >= {POOL, "getWeather"},
             what="both workers' catalogue entries")
