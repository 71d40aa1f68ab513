"""The metrics fold: exact stage latencies from hand-timed events, duplicates ignored."""

from __future__ import annotations

from typing import Any

import pytest

from agentlog.events.envelope import Envelope
from agentlog.services.metrics.compute import MetricsFold, fold_events, percentile, summarize


def event(type_: str, at_ms: int, payload: dict[str, Any] | None = None, *, turn: str = "t1",
          conversation: str = "c1", event_id: str | None = None) -> Envelope:
    seconds, millis = divmod(at_ms, 1000)
    return Envelope(id=event_id or f"{turn}-{type_}-{at_ms}", kind="event", type=type_, conversation_id=conversation,
                    turn_id=turn, user_id="u", timestamp=f"2026-01-01T00:00:{seconds:02d}.{millis:03d}Z",
                    source="test", payload=payload or {})


def requested(invocation: str, tool: str, at_ms: int, **kw: Any) -> Envelope:
    return event("ToolInvocationRequested", at_ms, {"invocationId": invocation, "tool": tool}, **kw)


def resulted(invocation: str, at_ms: int, **kw: Any) -> Envelope:
    return event("ToolInvocationResulted", at_ms, {"invocationId": invocation}, **kw)


# One turn with two parallel tools; times in ms from 00:00:00.000.
TWO_TOOLS = [
    event("UserQueryReceived", 1_000),
    event("PlanGenerated", 1_012),                   # routing 12 ms
    requested("i1", "calculateMath", 1_020),         # dispatch 8 ms
    requested("i2", "recordEffect", 1_021),
    resulted("i1", 1_025),                           # calculateMath 5 ms
    event("PlanStepCompleted", 1_026),
    resulted("i2", 1_090),                           # recordEffect 69 ms
    event("PlanStepCompleted", 1_091),
    event("PlanCompleted", 1_100),                   # execution 1_020 -> 1_100 = 80 ms
    event("FinalAnswerSynthesized", 1_130, {"outcome": "completed"}),  # synthesis 30 ms, e2e 130 ms
]


def latencies(fold: MetricsFold) -> dict[str, list[float]]:
    return {key: list(values) for key, values in fold.samples.items()}


def test_stage_latencies_of_a_turn_are_exact_and_add_up_to_end_to_end() -> None:
    fold = fold_events(TWO_TOOLS)
    assert latencies(fold) == {
        "routing": [0.012], "dispatch": [0.008], "tool:calculateMath": [0.005], "tool:recordEffect": [0.069],
        "execution": [0.080], "synthesis": [0.030], "end_to_end": [0.130],
    }
    assert sum(latencies(fold)[s][0] for s in ("routing", "dispatch", "execution", "synthesis")) == pytest.approx(0.130)
    assert fold.outcomes == {"completed": 1}
    assert fold.snapshot()["turnsInFlight"] == 0


def test_duplicates_are_ignored_whatever_their_position() -> None:
    with_duplicates = [*TWO_TOOLS[:5], TWO_TOOLS[2], TWO_TOOLS[4], *TWO_TOOLS[5:], TWO_TOOLS[-1], TWO_TOOLS[0]]
    fold = fold_events(with_duplicates)
    assert latencies(fold) == latencies(fold_events(TWO_TOOLS))
    assert fold.events == len(TWO_TOOLS) and fold.duplicates == 4
    assert fold.outcomes == {"completed": 1}


def test_a_planning_failure_ends_routing_and_synthesis_starts_there() -> None:
    fold = fold_events([
        event("UserQueryReceived", 2_000),
        event("PlanFailed", 2_004, {"stage": "planning"}),
        event("FinalAnswerSynthesized", 2_010, {"outcome": "failed"}),
    ])
    assert latencies(fold) == {"routing": [0.004], "synthesis": [0.006], "end_to_end": [0.010]}
    assert fold.outcomes == {"failed": 1}


def test_a_retried_step_measures_each_attempt_and_a_late_result_after_the_answer() -> None:
    fold = fold_events([
        event("UserQueryReceived", 0),
        event("PlanGenerated", 10),
        requested("a1", "recordEffect", 20),
        event("StepTimerFired", 420),
        requested("a2", "recordEffect", 640),
        resulted("a2", 700),
        event("PlanCompleted", 710),
        event("FinalAnswerSynthesized", 730, {"outcome": "completed"}),
        resulted("a1", 2_520),  # the slow first attempt finishes after the turn ended
    ])
    assert latencies(fold)["tool:recordEffect"] == [0.060, 2.500]
    assert latencies(fold)["dispatch"] == [0.010]  # to the first attempt only
    assert latencies(fold)["execution"] == [0.690]


def test_events_of_a_turn_begun_before_the_fold_are_counted_but_not_timed() -> None:
    fold = fold_events(TWO_TOOLS[1:])
    assert set(latencies(fold)) == {"tool:calculateMath", "tool:recordEffect"}
    assert fold.events == len(TWO_TOOLS) - 1


def test_throughput_counts_events_and_answers_in_the_window_ending_at_the_latest_event() -> None:
    fold = MetricsFold(window_seconds=10)
    turns = [[event("UserQueryReceived", start, turn=f"t{start}", conversation=f"c{start}"),
              event("FinalAnswerSynthesized", start + 500, {"outcome": "completed"}, turn=f"t{start}",
                    conversation=f"c{start}")]
             for start in (0, 5_000, 12_000, 14_000)]
    for pair in turns:
        for e in pair:
            fold.apply(e)
    # Window (4.5 s, 14.5 s]: the events at 5.0, 5.5, 12.0, 12.5, 14.0, 14.5 s; answers at 5.5, 12.5, 14.5 s.
    assert fold.throughput() == (pytest.approx(0.6), pytest.approx(0.3))
    assert fold.throughput(now_ms=30_000) == (0.0, 0.0)
    assert fold.snapshot()["conversations"] == 4


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50.0, 95.0, 99.0)
    summary = summarize(reversed(values))
    assert (summary.count, summary.mean, summary.max) == (100, 50.5, 100.0)
    assert summarize([]).count == 0
