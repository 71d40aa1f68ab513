"""The provider chain: retries with back-off, the circuit breaker (injected clock), fallback, config."""

from __future__ import annotations

import pytest

from agentlog.errors import ConfigurationError
from agentlog.llm.base import ChatMessage, LLMUnavailable
from agentlog.llm.chain import (
    CircuitBreaker,
    GuardedModel,
    ProviderChain,
    RetryPolicy,
    chain_members,
    configured_chat_model,
)
from agentlog.llm.http import ProviderError
from agentlog.llm.ollama import OllamaChat
from agentlog.llm.openai import OpenAIChat
from llm_fakes import FakeClock, Reply, ScriptedModel, ollama_reply, openai_reply, refused_url, serving

ASK: list[ChatMessage] = [{"role": "user", "content": "hi"}]


def down(retryable: bool = True) -> ProviderError:
    return ProviderError("p: HTTP 503", retryable=retryable)


def test_breaker_opens_after_consecutive_failures_and_half_opens_after_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=2, cooldown_s=10, clock=clock)
    breaker.record_failure()
    breaker.record_success()  # success resets the count: only consecutive failures open it
    breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert (breaker.state, breaker.allow(), breaker.retry_in()) == ("open", False, 10)
    clock.now += 9.5
    assert not breaker.allow()
    clock.now += 0.5
    assert (breaker.state, breaker.allow()) == ("half-open", True)
    breaker.record_failure()  # the trial failed: open again for a whole cool-down
    assert breaker.state == "open"
    clock.now += 10
    breaker.record_success()  # the trial succeeded: closed
    assert (breaker.state, breaker.failures) == ("closed", 0)


def test_retryable_failures_are_retried_with_doubling_backoff() -> None:
    model = ScriptedModel("p", [down(), down(), "ok"])
    delays: list[float] = []
    guarded = GuardedModel(model, retry=RetryPolicy(max_attempts=3, backoff_s=0.5), sleep=delays.append,
                           breaker=CircuitBreaker(threshold=5))
    assert guarded.complete(ASK).text == "ok"
    assert delays == [0.5, 1.0]
    assert guarded.breaker.failures == 0


def test_non_retryable_failure_and_exhausted_attempts_raise() -> None:
    delays: list[float] = []
    once = GuardedModel(ScriptedModel("p", [down(retryable=False)]), sleep=delays.append)
    with pytest.raises(ProviderError):
        once.complete(ASK)
    twice = GuardedModel(ScriptedModel("p", [down(), down()]), retry=RetryPolicy(max_attempts=2), sleep=delays.append)
    with pytest.raises(ProviderError):
        twice.complete(ASK)
    assert delays == [0.5]


def test_open_circuit_refuses_without_calling_until_the_cooldown_passes() -> None:
    clock = FakeClock()
    model = ScriptedModel("p", [down(), down(), "back"])
    guarded = GuardedModel(model, retry=RetryPolicy(max_attempts=3), breaker=CircuitBreaker(2, 30, clock),
                           sleep=lambda _: None)
    with pytest.raises(ProviderError, match=r"circuit open after 2 consecutive failures, next try in 30\.0s"):
        guarded.complete(ASK)  # the breaker opens mid-call and stops the third attempt
    with pytest.raises(ProviderError, match="circuit open"):
        guarded.complete(ASK)
    assert len(model.calls) == 2
    clock.now += 30
    assert guarded.complete(ASK).text == "back"
    assert guarded.breaker.state == "closed"


def _chain(*providers: OllamaChat | OpenAIChat) -> ProviderChain:
    return ProviderChain([GuardedModel(p, retry=RetryPolicy(max_attempts=1)) for p in providers])


def test_primary_answers() -> None:
    with serving(ollama_reply("from ollama")) as primary, serving(openai_reply("from openai")) as secondary:
        completion = _chain(OllamaChat(primary.url), OpenAIChat(secondary.url)).complete(ASK)
    assert (completion.text, completion.provider) == ("from ollama", "ollama")
    assert secondary.requests == []


def test_primary_down_or_slow_falls_back_to_the_secondary() -> None:
    with serving(Reply(hang=True)) as slow, serving(openai_reply("a"), openai_reply("b")) as secondary:
        chain = _chain(OllamaChat(slow.url, timeout_s=0.2), OpenAIChat(secondary.url))
        assert chain.complete(ASK).provider == "openai"
        chain = _chain(OllamaChat(refused_url()), OpenAIChat(secondary.url))
        assert chain.complete(ASK).text == "b"


def test_all_down_names_every_provider() -> None:
    with serving(Reply({"error": "bad key"}, 401)) as secondary:
        chain = _chain(OllamaChat(refused_url()), OpenAIChat(secondary.url))
        with pytest.raises(LLMUnavailable) as caught:
            chain.complete(ASK)
    message = str(caught.value)
    assert message.startswith("every LLM provider failed: ollama: cannot reach")
    assert "openai: HTTP 401" in message


def test_open_primary_is_skipped_fast() -> None:
    clock = FakeClock()
    with serving(Reply({}, 500), Reply({}, 500)) as primary, serving(openai_reply("x"), openai_reply("y")) as secondary:
        chain = ProviderChain([
            GuardedModel(OllamaChat(primary.url), retry=RetryPolicy(max_attempts=1),
                         breaker=CircuitBreaker(1, 60, clock)),
            GuardedModel(OpenAIChat(secondary.url), retry=RetryPolicy(max_attempts=1)),
        ])
        assert chain.complete(ASK).text == "x"
        assert chain.complete(ASK).text == "y"
    assert len(primary.requests) == 1


def test_configuration_from_the_environment() -> None:
    assert configured_chat_model({}) is None
    only_ollama = configured_chat_model({"OLLAMA_HOST": "127.0.0.1:1", "OLLAMA_MODEL": "qwen"})
    assert only_ollama is not None
    (member,) = chain_members(only_ollama)
    assert isinstance(member, GuardedModel) and isinstance(member.model, OllamaChat)
    assert (member.model.host, member.model.model) == ("http://127.0.0.1:1", "qwen")
    both = configured_chat_model({"OPENAI_BASE_URL": "http://127.0.0.1:2/v1", "OLLAMA_HOST": "http://h:3",
                                  "AGENTLOG_LLM_ATTEMPTS": "4", "AGENTLOG_LLM_BREAKER_FAILURES": "5"})
    assert both is not None
    assert [m.name for m in chain_members(both)] == ["ollama", "openai"]
    first = chain_members(both)[0]
    assert isinstance(first, GuardedModel)
    assert (first.retry.max_attempts, first.breaker.threshold) == (4, 5)
    with pytest.raises(ConfigurationError, match="AGENTLOG_LLM_TIMEOUT_S"):
        configured_chat_model({"OPENAI_API_KEY": "k", "AGENTLOG_LLM_TIMEOUT_S": "soon"})
    for counted in ("AGENTLOG_LLM_ATTEMPTS", "AGENTLOG_LLM_BREAKER_FAILURES"):  # "0.5" was read as 0 attempts
        with pytest.raises(ConfigurationError, match=f"{counted} must be a whole number"):
            configured_chat_model({"OPENAI_API_KEY": "k", counted: "0.5"})
