"""What a model-backed planner or synthesizer reports besides its answer, for the event log.

The router and synthesis services record who actually answered (a configured LLM may have fallen
back to the offline rules) and, when a model did, its provider, model, latency and tokens: the
optional `llm` object of PlanGenerated and FinalAnswerSynthesized. This module holds only the
shapes, so the services can check for them without importing any provider code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard, runtime_checkable

from agentlog.llm.base import Completion

if TYPE_CHECKING:
    from agentlog.events.plan import Plan
    from agentlog.llm.streaming import TextSink
    from agentlog.services.router.planner import PlanningQuery


def llm_audit(completions: list[Completion]) -> dict[str, Any]:
    """The `llm` object for the calls one answer took (a repaired plan took two): the last call's
    provider and model, latency and tokens summed; a token count is null if any call lacked it."""
    last = completions[-1]

    def total(counts: list[int | None]) -> int | None:
        return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)

    return {"provider": last.provider, "model": last.model,
            "latencyMs": round(sum(c.latency_ms for c in completions), 3),
            "promptTokens": total([c.prompt_tokens for c in completions]),
            "completionTokens": total([c.completion_tokens for c in completions])}


@dataclass(frozen=True)
class PlannedBy:
    plan: Plan
    planner: str  # the name recorded in PlanGenerated: who made this plan
    llm: dict[str, Any] | None  # set when a model made it
    refused: tuple[str, ...] = ()  # why model replies were refused on the way to this plan


@runtime_checkable
class AuditedPlanner(Protocol):
    """A planner that can say who made each plan (the router records it)."""

    def plan_audited(self, query: PlanningQuery) -> PlannedBy: ...


@dataclass(frozen=True)
class WrittenBy:
    text: str
    synthesizer: str  # the name recorded in FinalAnswerSynthesized
    llm: dict[str, Any] | None


@runtime_checkable
class AuditedSynthesizer(Protocol):
    """A synthesizer that can say who wrote each answer (the synthesis service records it)."""

    def synthesize_audited(self, request: Mapping[str, Any]) -> WrittenBy: ...


@runtime_checkable
class StreamingSynthesizer(Protocol):
    """A synthesizer that streams its answer as it writes it (see llm/streaming.py) and says who wrote it."""

    def synthesize_streaming(self, request: Mapping[str, Any], sink: TextSink) -> WrittenBy: ...


_IMPLEMENTS: dict[tuple[type, type], bool] = {}


def _implements(cls: type, protocol: type) -> bool:
    # isinstance against a runtime-checkable Protocol costs ~30 µs; the answer depends on the class only
    known = _IMPLEMENTS.get((cls, protocol))
    if known is None:
        known = _IMPLEMENTS[(cls, protocol)] = issubclass(cls, protocol)
    return known


def is_audited_planner(planner: object) -> TypeGuard[AuditedPlanner]:
    return _implements(type(planner), AuditedPlanner)


def is_streaming_synthesizer(synthesizer: object) -> TypeGuard[StreamingSynthesizer]:
    return _implements(type(synthesizer), StreamingSynthesizer)
