"""The interface every LLM provider implements, and what a completion records.

Providers are configured by environment variables (see llm/chain.py). Code that can use a model
(the router, synthesis, the LLM tools) asks for the configured chain and must work without one:
`configured_chat_model()` returns None when no provider is configured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict

from agentlog.errors import AgentlogError


class ChatMessage(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class Completion:
    """A model's reply and the facts an auditor wants: who answered, how fast, at what cost."""

    text: str
    provider: str
    model: str
    latency_ms: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def audit(self) -> dict[str, Any]:
        return {"provider": self.provider, "model": self.model, "latencyMs": round(self.latency_ms, 3),
                "promptTokens": self.prompt_tokens, "completionTokens": self.completion_tokens}


class LLMUnavailable(AgentlogError):
    """No provider is configured, or every configured provider failed; the message says which and why."""


class ChatModel(Protocol):
    name: str

    def complete(self, messages: Sequence[ChatMessage], *, json_schema: Mapping[str, Any] | None = None,
                 temperature: float = 0.0, max_tokens: int = 512) -> Completion: ...
