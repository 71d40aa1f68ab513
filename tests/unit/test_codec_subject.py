"""The subject header lets consumers skip what they do not fold: it is read from every header shape
librdkafka gives, and skipping is sound only if the skipped subjects change nothing, so that is
checked against the folds themselves for every packaged event subject."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentlog.events.codec import SUBJECT_HEADER, IncomingHeaders, subject_header
from agentlog.events.envelope import Envelope
from agentlog.events.schemas import payload_subjects
from agentlog.kafka.eos import OFFSETS_DELAY, offsets_due
from agentlog.services.aggregator.fold import SUBJECTS, AggregatorDecider, AggregatorState
from agentlog.services.router.memory import MemoryLimits, MemoryState, remember
from agentlog.services.router.service import MEMORY_SUBJECTS, RouterHandler

NOW = datetime(2026, 1, 1, tzinfo=UTC)
EVENT_TYPES = [s.split(".", 1)[1] for s in payload_subjects() if s.startswith("event.")]


def event(type_: str, payload: dict[str, object] | None = None) -> Envelope:
    return Envelope(id="00000000-0000-0000-0000-000000000001", kind="event", type=type_, conversation_id="c1",
                    turn_id="t1", user_id="u1", timestamp="2026-01-01T00:00:00.000Z", source="test",
                    payload=payload or {"stepId": "s1", "status": "succeeded", "output": 1})


@pytest.mark.parametrize("headers", [
    [("traceparent", b"00-ab-cd-01"), (SUBJECT_HEADER, b"event.PlanGenerated")],
    {SUBJECT_HEADER: "event.PlanGenerated"},
])
def test_the_subject_is_read_from_list_or_dict_headers(headers: IncomingHeaders) -> None:
    assert subject_header(headers) == "event.PlanGenerated"


@pytest.mark.parametrize("headers", [None, [], [("traceparent", b"x")], [(SUBJECT_HEADER, None)]])
def test_no_subject_header_means_decode_as_before(headers: IncomingHeaders) -> None:
    assert subject_header(headers) is None


def test_offsets_without_outputs_wait_while_busy_and_commit_when_idle_or_old() -> None:
    assert offsets_due(100.0, polled_messages=False, now=100.0)
    assert not offsets_due(100.0, polled_messages=True, now=100.0 + OFFSETS_DELAY / 2)
    assert offsets_due(100.0, polled_messages=True, now=100.0 + OFFSETS_DELAY)


@pytest.mark.parametrize("type_", [t for t in EVENT_TYPES if f"event.{t}" not in SUBJECTS])
def test_events_the_aggregator_skips_would_not_change_its_state(type_: str) -> None:
    state = AggregatorState("c1", {"t1": {"userInput": "q", "language": "en", "synthesisRequired": True,
                                          "steps": {"s1": {"tool": "x", "arguments": {}, "dependsOn": []}},
                                          "order": ["s1"], "done": False}})
    decision = AggregatorDecider().decide(state, event(type_), NOW)
    assert decision.state == state and decision.outputs == []


@pytest.mark.parametrize("type_", [t for t in EVENT_TYPES if f"event.{t}" not in MEMORY_SUBJECTS])
def test_events_the_router_skips_would_not_change_its_memory(type_: str) -> None:
    state = MemoryState("c1", waiting=(("t1", "q"),))
    assert remember(state, event(type_), MemoryLimits()) == state


def test_the_router_wants_every_command_and_only_the_memory_events() -> None:
    wants = RouterHandler.wants
    handler = RouterHandler.__new__(RouterHandler)
    assert wants(handler, "command.UserQueryReceived") and wants(handler, "command.UserControl")
    assert wants(handler, "event.FinalAnswerSynthesized") and not wants(handler, "event.PlanStepCompleted")
