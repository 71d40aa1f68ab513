"""Turns the router runs inline: the same events, ids and answer as the orchestrated path, and only
for plans no other service is needed for; the orchestrator and aggregator fold them without acting."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import agentlog.tools.math  # noqa: F401  (registers calculateMath)
from agentlog.events.codec import INLINE_TURN_HEADER
from agentlog.events.envelope import Envelope, caused_by, command
from agentlog.kafka.eos import Output
from agentlog.kafka.topics import CONVERSATION_EVENTS
from agentlog.llm.streaming import NullSink
from agentlog.ops.replay import state_at
from agentlog.services.aggregator.fold import AggregatorDecider
from agentlog.services.orchestrator.decide import OrchestratorDecider
from agentlog.services.router.inline import InlineTurns
from agentlog.services.synthesis.compose import TemplateSynthesizer
from agentlog.services.synthesis.service import answer_event
from agentlog.state.fold import FoldHandler
from agentlog.state.store import PartitionStore
from agentlog.tools.registry import DEFAULT_REGISTRY, ToolError, ToolOutput, ToolRegistry, ToolSpec, tool

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CALCULATE = DEFAULT_REGISTRY.get("calculateMath")
assert CALCULATE is not None
LOCAL: dict[str, ToolSpec] = {"calculateMath": CALCULATE}
FLAKY_TOOLS = ToolRegistry()


@tool("flakyLocal", "fails retryably", FLAKY_TOOLS, local=True)
def flaky_local() -> ToolOutput:
    raise ToolError("try again", retryable=True)


class ModelSynthesizer:
    """Stands in for an LLM synthesizer: the inline path must never call it."""

    name = "model"

    def synthesize(self, request: Any) -> str:
        raise AssertionError("an inline turn called the model synthesizer")


def question() -> Envelope:
    return command("UserQueryReceived", conversation_id="c1", turn_id="t1", user_id="u1",
                   payload={"userInput": "What is (2 + 3) * 4?"}, source="test", now=NOW)


def asked() -> Envelope:
    return caused_by(question(), "event", "UserQueryReceived", {"userInput": "What is (2 + 3) * 4?",
                                                                "language": "en"}, source="router", now=NOW)


def plan(steps: list[dict[str, Any]], synthesis: bool = True) -> Envelope:
    for step in steps:
        step.setdefault("dependsOn", [])
    payload = {"plan": {"steps": steps, "finalAnswerSynthesisRequired": synthesis}, "planner": "test", "language": "en"}
    return caused_by(question(), "event", "PlanGenerated", payload, source="router", now=NOW)


TWO_STEPS = [{"id": "sum", "tool": "calculateMath", "arguments": {"expression": "2 + 3"}},
             {"id": "times", "tool": "calculateMath", "arguments": {"expression": "{{sum}} * 4"}, "dependsOn": ["sum"]}]


def inline(**kwargs: Any) -> InlineTurns:
    turns = InlineTurns.from_env(kwargs.pop("local", LOCAL), kwargs.pop("approvals", {}),
                                 kwargs.pop("synthesizer", TemplateSynthesizer()), env=kwargs.pop("env", {}))
    assert turns is not None
    return turns


def orchestrated(question_event: Envelope, plan_event: Envelope) -> list[Envelope]:
    """What the orchestrator, aggregator and synthesis services write for this plan, one hop each."""
    orchestrator = OrchestratorDecider(LOCAL)
    steps = [o.envelope for o in orchestrator.decide(orchestrator.initial("c1"), plan_event, NOW).outputs]
    aggregator, requests = AggregatorDecider(), []
    state = aggregator.initial("c1")
    for event in (question_event, plan_event, *steps):
        decision = aggregator.decide(state, event, NOW)
        state, requests = decision.state, requests + decision.outputs
    assert len(requests) == 1
    request = requests[0].envelope
    return [*steps, answer_event(TemplateSynthesizer(), request.payload, request, NOW, NullSink())]


def test_a_local_plan_is_written_whole_with_the_orchestrated_paths_ids_and_answer() -> None:
    plan_event = plan([dict(s) for s in TWO_STEPS])
    outputs = inline().run(asked(), plan_event, NOW)
    assert outputs is not None and all(o.topic == CONVERSATION_EVENTS for o in outputs)
    events = [o.envelope for o in outputs]
    assert events[0].id == plan_event.id and events[0].payload == {**plan_event.payload, "inline": True}
    expected = orchestrated(asked(), plan_event)
    assert [(e.type, e.id) for e in events[1:]] == [(e.type, e.id) for e in expected]
    assert [e.type for e in events].count("ToolInvocationResulted") == 2
    assert events[-1].type == "FinalAnswerSynthesized"
    assert events[-1].payload == expected[-1].payload
    assert "20" in events[-1].payload["message"] and events[-1].payload["outcome"] == "completed"
    assert {e.source for e in events[1:]} == {"router"}


def test_a_failing_local_step_ends_the_turn_inline_with_a_failed_answer() -> None:
    outputs = inline().run(asked(), plan([{"id": "bad", "tool": "calculateMath",
                                           "arguments": {"expression": "1 / 0"}}]), NOW)
    assert outputs is not None
    types = [o.envelope.type for o in outputs]
    assert "PlanFailed" in types and types[-1] == "FinalAnswerSynthesized"
    assert outputs[-1].envelope.payload["outcome"] == "failed"


def test_plans_that_need_another_service_are_left_to_the_orchestrator() -> None:
    weather = plan([{"id": "w", "tool": "getWeather", "arguments": {"city": "Paris"}}])
    assert inline().run(asked(), weather, NOW) is None  # a tool worker's tool
    assert inline(approvals={"calculateMath": 1000}).run(asked(), plan([dict(s) for s in TWO_STEPS]), NOW) is None
    retry = plan([{"id": "f", "tool": "flakyLocal", "arguments": {}}])
    flaky = FLAKY_TOOLS.get("flakyLocal")
    assert flaky is not None
    assert inline(local={"flakyLocal": flaky}).run(asked(), retry, NOW) is None  # waits for a back-off timer
    model = inline(synthesizer=ModelSynthesizer())
    assert model.run(asked(), plan([dict(s) for s in TWO_STEPS]), NOW) is None  # a model writes the answer
    # ... unless the plan asks for no synthesis: then the template words it, as the synthesis service would.
    unsynthesized = model.run(asked(), plan([dict(s) for s in TWO_STEPS], synthesis=False), NOW)
    assert unsynthesized is not None and unsynthesized[-1].envelope.payload["synthesizer"] == "offline-template"


def test_inline_turns_can_be_switched_off_and_need_local_tools() -> None:
    assert InlineTurns.from_env(LOCAL, {}, TemplateSynthesizer(), env={"AGENTLOG_INLINE_TURNS": "0"}) is None
    assert InlineTurns.from_env({}, {}, TemplateSynthesizer(), env={}) is None


def test_orchestrator_and_aggregator_fold_an_inline_turn_without_sending_anything() -> None:
    outputs = inline().run(asked(), plan([dict(s) for s in TWO_STEPS]), NOW)
    assert outputs is not None
    orchestrator, aggregator = OrchestratorDecider(LOCAL), AggregatorDecider()
    o_state, a_state = orchestrator.initial("c1"), aggregator.initial("c1")
    sent: list[Output] = []
    for event in (asked(), *(o.envelope for o in outputs)):
        o_decision, a_decision = orchestrator.decide(o_state, event, NOW), aggregator.decide(a_state, event, NOW)
        o_state, a_state = o_decision.state, a_decision.state
        sent += o_decision.outputs + a_decision.outputs
    assert sent == []
    assert o_state.turns["t1"].status == "inline"
    assert a_state.turns["t1"] == {"done": True}


def test_replay_shows_an_inline_turns_steps_as_they_were_recorded() -> None:
    outputs = inline().run(asked(), plan([dict(s) for s in TWO_STEPS]), NOW)
    assert outputs is not None
    events = [asked(), *(o.envelope for o in outputs)]
    first_result = next(i for i, e in enumerate(events) if e.type == "ToolInvocationResulted")
    during = state_at(events, first_result).turns["t1"]
    assert during.status == "running" and during.steps["sum"].status == "succeeded"
    assert during.steps["times"].status == "running"
    after = state_at(events, len(events) - 1).turns["t1"]
    assert after.status == "completed" and after.steps["times"].value is not None


class Tagged:
    """The parts of a consumed message `FoldHandler.skips` reads."""

    def __init__(self, output: Output) -> None:
        self._headers = list(output.headers)

    def key(self) -> bytes:
        return b"c1"

    def partition(self) -> int:
        return 0

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers


@pytest.mark.parametrize("reader", ["orchestrator", "aggregator"])
def test_an_inline_turns_rest_is_skipped_unread_once_its_plan_is_recorded(reader: str, tmp_path: Path) -> None:
    outputs = inline().run(asked(), plan([dict(s) for s in TWO_STEPS]), NOW)
    assert outputs is not None
    marked = [o for o in outputs if o.headers]
    assert outputs[0].headers == () and marked == outputs[1:]  # the plan itself is read by everyone
    assert {o.headers for o in marked} == {((INLINE_TURN_HEADER, b"t1"),)}
    decider: Any = OrchestratorDecider(LOCAL) if reader == "orchestrator" else AggregatorDecider()
    handler: FoldHandler[Any] = FoldHandler(decider, PartitionStore(tmp_path / reader),
                                            inline_settled=decider.recorded_inline)
    assert not any(handler.skips(m, m.headers()) for m in map(Tagged, marked))  # plan not read yet: read them
    for event in (asked(), outputs[0].envelope):
        handler._apply(0, event, NOW)
    recorded = handler.state(0, "c1")
    assert all(handler.skips(m, m.headers()) for m in map(Tagged, marked))
    for output in marked:  # skipping them changes nothing: folding them leaves the same state
        handler._apply(0, output.envelope, NOW)
    assert handler.state(0, "c1") is recorded
    # A header naming a turn not recorded as inline (running here) is no reason to skip: it is read.
    running = plan([{"id": "w", "tool": "getWeather", "arguments": {"city": "Paris"}}])
    forged = Output(CONVERSATION_EVENTS, replace(running, turn_id="t2"), ((INLINE_TURN_HEADER, b"t2"),))
    handler._apply(0, forged.envelope, NOW)
    assert not handler.skips(Tagged(forged), forged.headers)
