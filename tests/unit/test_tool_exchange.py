"""getExchangeRate: the dated offline snapshot, and a Frankfurter-speaking server when configured."""

from __future__ import annotations

import pytest

from agentlog.tools.exchange import reference_snapshot
from agentlog.tools.registry import DEFAULT_REGISTRY, ToolContext, ToolError, ToolOutput
from llm_fakes import Reply
from tool_fakes import FakeAPI, frankfurter

CONTEXT = ToolContext("inv", "key", "conv", "turn", "s1", 1)


def rate(source: str, target: str) -> ToolOutput:
    spec = DEFAULT_REGISTRY.get("getExchangeRate")
    assert spec is not None
    return spec.call({"from": source, "to": target}, CONTEXT)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXCHANGE_RATES_URL", raising=False)
    monkeypatch.setenv("AGENTLOG_TOOL_HTTP_TIMEOUT_S", "0.5")


def test_the_schema_uses_the_planners_argument_names() -> None:
    spec = DEFAULT_REGISTRY.get("getExchangeRate")
    assert spec is not None and spec.parameters["required"] == ["from", "to"]


def test_offline_rate_is_a_cross_rate_of_the_snapshot_and_says_it_is_indicative_and_dated() -> None:
    snapshot = reference_snapshot()
    out = rate("usd", "ILS")
    assert out.value == pytest.approx(snapshot["rates"]["ILS"] / snapshot["rates"]["USD"], rel=1e-5)
    assert out.data["date"] == snapshot["date"] and "indicative, not live" in out.data["source"]
    assert snapshot["date"] in out.text and "indicative" in out.text and out.data["live"] is False


def test_same_currency_is_one() -> None:
    assert rate("EUR", "eur").value == 1.0


@pytest.mark.parametrize(("source", "target", "named"), [("XYZ", "ILS", "XYZ"), ("USD", "QQQ", "QQQ")])
def test_unknown_currency_fails_for_good_naming_it(source: str, target: str, named: str) -> None:
    with pytest.raises(ToolError) as failure:
        rate(source, target)
    assert named in failure.value.message and not failure.value.retryable
    assert failure.value.error_type == "UnknownCurrency"


def test_a_code_that_is_not_three_letters_is_refused() -> None:
    with pytest.raises(ToolError, match="three-letter"):
        rate("dollars", "ILS")


def test_live_rate_comes_from_the_configured_server(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeAPI(frankfurter) as api:
        monkeypatch.setenv("EXCHANGE_RATES_URL", api.url + "/")
        out = rate("USD", "ILS")
    assert api.requests == [("/latest", {"from": "USD", "to": "ILS"})]
    assert out.value == 3.71 and out.data["date"] == "2026-11-20" and out.data["live"] is True
    assert "2026-11-20" in out.text and api.url in out.text


def test_live_unknown_currency_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeAPI(frankfurter) as api:
        monkeypatch.setenv("EXCHANGE_RATES_URL", api.url)
        with pytest.raises(ToolError) as failure:
            rate("USD", "XAU")
    assert not failure.value.retryable and "unknown currency" in failure.value.message


@pytest.mark.parametrize("reply", [Reply({"message": "down"}, 503), Reply(hang=True)])
def test_server_errors_and_timeouts_are_retryable(monkeypatch: pytest.MonkeyPatch, reply: Reply) -> None:
    with FakeAPI(lambda path, query: reply) as api:
        monkeypatch.setenv("EXCHANGE_RATES_URL", api.url)
        with pytest.raises(ToolError) as failure:
            rate("USD", "ILS")
    assert failure.value.retryable


def test_an_unreachable_server_is_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    from llm_fakes import refused_url

    monkeypatch.setenv("EXCHANGE_RATES_URL", refused_url())
    with pytest.raises(ToolError) as failure:
        rate("USD", "ILS")
    assert failure.value.retryable and failure.value.error_type == "Unavailable"
