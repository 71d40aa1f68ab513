"""The configured providers as one ChatModel: Ollama first, then an OpenAI-compatible server.

Each provider sits behind a `GuardedModel`: its HTTP timeout bounds every call, a retryable failure
is tried again (bounded, exponential back-off) and a circuit breaker stops calling a provider that
keeps failing, so a dead server costs one fast "circuit open" per question instead of a timeout.
`ProviderChain.complete` returns the first provider's answer and raises LLMUnavailable naming every
provider's failure when none answers. Callers that must judge an answer before falling back (the
planner repairs a bad plan first) walk `ProviderChain.members` themselves.

Environment: OLLAMA_HOST / OLLAMA_MODEL / OLLAMA_FORMAT, OPENAI_API_KEY / OPENAI_BASE_URL /
OPENAI_MODEL / OPENAI_JSON_MODE, and for every provider AGENTLOG_LLM_TIMEOUT_S (20),
AGENTLOG_LLM_ATTEMPTS (2), AGENTLOG_LLM_BREAKER_FAILURES (3), AGENTLOG_LLM_BREAKER_COOLDOWN_S (30).
Worst case per call: attempts x timeout per provider, plus back-off.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentlog.config import positive_number, positive_whole_number
from agentlog.errors import ConfigurationError
from agentlog.llm.base import ChatMessage, ChatModel, Completion, LLMUnavailable
from agentlog.llm.http import ProviderError
from agentlog.llm.streaming import TextSink, TrackingSink, stream_completion

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per call and the back-off between them (doubling from `backoff_s`, capped)."""

    max_attempts: int = 2
    backoff_s: float = 0.5
    max_backoff_s: float = 4.0

    def delay(self, failed_attempts: int) -> float:
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** (failed_attempts - 1)))


class CircuitBreaker:
    """Closed until `threshold` consecutive failed attempts; then open (calls refused at once) for
    `cooldown_s`; then half-open: one trial call, whose success closes it and failure re-opens it."""

    def __init__(self, threshold: int = 3, cooldown_s: float = 30.0, clock: Clock = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= self.cooldown_s else "open"

    def allow(self) -> bool:
        return self.state != "open"

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def record_failure(self) -> None:
        half_open = self.state == "half-open"
        self.failures += 1
        if half_open or self.failures >= self.threshold:
            self.opened_at = self.clock()

    def retry_in(self) -> float:
        return 0.0 if self.opened_at is None else max(0.0, self.cooldown_s - (self.clock() - self.opened_at))


class GuardedModel:
    """A provider behind retries and a circuit breaker; raises ProviderError naming the provider."""

    def __init__(self, model: ChatModel, *, retry: RetryPolicy | None = None, breaker: CircuitBreaker | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.model = model
        self.name = model.name
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self._sleep = sleep

    def complete(self, messages: Sequence[ChatMessage], *, json_schema: Mapping[str, Any] | None = None,
                 temperature: float = 0.0, max_tokens: int = 512) -> Completion:
        return self._guarded(lambda: self.model.complete(messages, json_schema=json_schema, temperature=temperature,
                                                         max_tokens=max_tokens))

    def stream(self, messages: Sequence[ChatMessage], sink: TextSink, *, temperature: float = 0.0,
               max_tokens: int = 512) -> Completion:
        """Like `complete`, streaming into `sink`; a retry after a partial reply restarts the sink."""
        tracked = TrackingSink(sink)
        return self._guarded(lambda: stream_completion(self.model, messages, tracked, temperature=temperature,
                                                       max_tokens=max_tokens), before_retry=tracked.restart)

    def _guarded(self, call: Callable[[], Completion], before_retry: Callable[[], None] = lambda: None) -> Completion:
        last: ProviderError | None = None
        attempt = 0
        while True:
            attempt += 1
            if not self.breaker.allow():
                reason = f"; last error: {last}" if last else ""
                raise ProviderError(f"{self.name}: circuit open after {self.breaker.failures} consecutive failures, "
                                    f"next try in {self.breaker.retry_in():.1f}s{reason}", retryable=False)
            try:
                completion = call()
            except ProviderError as error:
                self.breaker.record_failure()
                last = error
                log.warning("LLM provider %s failed (attempt %d/%d): %s", self.name, attempt,
                            self.retry.max_attempts, error)
                if not error.retryable or attempt >= self.retry.max_attempts:
                    raise
                self._sleep(self.retry.delay(attempt))
                before_retry()
                continue
            self.breaker.record_success()
            return completion


class ProviderChain:
    """Providers in order of preference; the first answer wins."""

    name = "chain"

    def __init__(self, members: Sequence[GuardedModel]) -> None:
        if not members:
            raise ConfigurationError("a provider chain needs at least one provider")
        self.members = tuple(members)

    def complete(self, messages: Sequence[ChatMessage], *, json_schema: Mapping[str, Any] | None = None,
                 temperature: float = 0.0, max_tokens: int = 512) -> Completion:
        return self._first(lambda member: member.complete(messages, json_schema=json_schema, temperature=temperature,
                                                          max_tokens=max_tokens))

    def stream(self, messages: Sequence[ChatMessage], sink: TextSink, *, temperature: float = 0.0,
               max_tokens: int = 512) -> Completion:
        """The first provider's reply streamed into `sink`; the next provider restarts what a failed one wrote."""
        tracked = TrackingSink(sink)

        def streamed(member: GuardedModel) -> Completion:
            tracked.restart()
            return member.stream(messages, tracked, temperature=temperature, max_tokens=max_tokens)

        return self._first(streamed)

    def _first(self, call: Callable[[GuardedModel], Completion]) -> Completion:
        failures: list[str] = []
        for member in self.members:
            try:
                return call(member)
            except LLMUnavailable as error:
                failures.append(str(error))
        raise LLMUnavailable("every LLM provider failed: " + "; ".join(failures))


def chain_members(model: ChatModel) -> tuple[ChatModel, ...]:
    """The providers to try one by one: a chain's members, or the model itself."""
    return model.members if isinstance(model, ProviderChain) else (model,)


def configured_chat_model(env: Mapping[str, str] | None = None, *, clock: Clock = time.monotonic,
                          sleep: Callable[[float], None] = time.sleep) -> ChatModel | None:
    """The chain of configured providers, or None when none is (callers then work offline).

    Ollama is configured by OLLAMA_HOST, the OpenAI-compatible server by OPENAI_API_KEY or
    OPENAI_BASE_URL. Each call builds a new chain with its own breakers: a process that wants one
    breaker state across its users should build it once and share it.
    """
    from agentlog.llm.ollama import OllamaChat
    from agentlog.llm.openai import OpenAIChat

    env = os.environ if env is None else env
    timeout_s = positive_number(env, "AGENTLOG_LLM_TIMEOUT_S", 20.0)
    retry = RetryPolicy(max_attempts=positive_whole_number(env, "AGENTLOG_LLM_ATTEMPTS", 2))
    threshold = positive_whole_number(env, "AGENTLOG_LLM_BREAKER_FAILURES", 3)
    cooldown_s = positive_number(env, "AGENTLOG_LLM_BREAKER_COOLDOWN_S", 30.0)
    providers: list[ChatModel] = []
    if env.get("OLLAMA_HOST"):
        providers.append(OllamaChat.from_env(env, timeout_s=timeout_s))
    if env.get("OPENAI_API_KEY") or env.get("OPENAI_BASE_URL"):
        providers.append(OpenAIChat.from_env(env, timeout_s=timeout_s))
    if not providers:
        return None
    return ProviderChain([GuardedModel(p, retry=retry, breaker=CircuitBreaker(threshold, cooldown_s, clock),
                                       sleep=sleep) for p in providers])
