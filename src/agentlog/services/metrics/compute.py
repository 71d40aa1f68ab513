"""Latency and throughput of the pipeline, folded from conversation-events alone.

Every number comes from the events' own timestamps (the producing service's clock at the time of
its transaction), so the same log always yields the same metrics, whoever reads it and when.
Duplicates (a message re-produced after a crash carries the same derived id) are dropped first.

Stages of one turn, all measured between events of that turn:

  end_to_end   UserQueryReceived (event)            -> FinalAnswerSynthesized
  routing      UserQueryReceived                    -> PlanGenerated (or PlanFailed while planning)
  dispatch     PlanGenerated                        -> first ToolInvocationRequested
  execution    first ToolInvocationRequested        -> PlanCompleted / PlanFailed
  synthesis    PlanCompleted / PlanFailed           -> FinalAnswerSynthesized
  tool         ToolInvocationRequested -> ToolInvocationResulted, per invocation id, by tool

The user's command is not in the event store (it lives on user-commands), so end-to-end starts at
the router's UserQueryReceived event: it excludes the client's hop to the router and the answer's
hop back, which only a client can measure (`agentlog bench` does). routing + dispatch + execution
+ synthesis add up to end_to_end for a turn that runs tools. The synthesis request is a command,
so aggregation is inside `synthesis`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agentlog.events.envelope import Envelope

STAGES = ("end_to_end", "routing", "dispatch", "execution", "synthesis", "tool")
# Stages that follow each other within a turn and add up to end_to_end (the stacked-bar order).
SEQUENTIAL_STAGES = ("routing", "dispatch", "execution", "synthesis")
DEFAULT_WINDOW_SECONDS = 60.0
SAMPLES_KEPT = 20_000  # per stage: enough for stable p99s, bounded for a long-running service
SEEN_IDS_KEPT = 1_000_000  # duplicates come close to their original; older ids can be forgotten


@dataclass(frozen=True)
class Observation:
    """One measured interval; `tool` is set for the `tool` stage only."""

    stage: str
    seconds: float
    tool: str | None = None


@dataclass
class _Turn:
    received_ms: int
    planned_ms: int | None = None
    first_request_ms: int | None = None
    ended_ms: int | None = None


@dataclass(frozen=True)
class Summary:
    count: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: float

    def to_json(self) -> dict[str, float | int]:
        return {"count": self.count, "mean": self.mean, "p50": self.p50, "p95": self.p95, "p99": self.p99,
                "max": self.max}


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending list; 0.0 when empty."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n*q/100), at least the first value
    return sorted_values[min(len(sorted_values), int(rank)) - 1]


def summarize(values: Iterable[float]) -> Summary:
    ordered = sorted(values)
    if not ordered:
        return Summary(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    return Summary(len(ordered), sum(ordered) / len(ordered), percentile(ordered, 50), percentile(ordered, 95),
                   percentile(ordered, 99), ordered[-1])


@dataclass
class MetricsFold:
    """The fold: `apply` each event in log order, read `snapshot` whenever needed."""

    window_seconds: float = DEFAULT_WINDOW_SECONDS
    events: int = 0
    duplicates: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    conversations: set[str] = field(default_factory=set)
    samples: dict[str, deque[float]] = field(default_factory=dict)
    _turns: dict[str, _Turn] = field(default_factory=dict)
    _invocations: dict[str, tuple[int, str]] = field(default_factory=dict)
    _seen: set[str] = field(default_factory=set)
    _seen_order: deque[str] = field(default_factory=deque)
    _event_times: deque[int] = field(default_factory=deque)
    _answer_times: deque[int] = field(default_factory=deque)
    _latest_ms: int = 0

    def apply(self, event: Envelope) -> list[Observation]:
        """Fold one event; returns the intervals it closes (nothing for a duplicate or a command)."""
        if event.kind != "event" or not self._first_sighting(event.id):
            return []
        self.events += 1
        self.conversations.add(event.conversation_id)
        at = event.timestamp_ms
        self._latest_ms = max(self._latest_ms, at)
        self._event_times.append(at)
        observations = self._observe(event, at)
        for observation in observations:
            key = observation.stage if observation.tool is None else f"tool:{observation.tool}"
            self.samples.setdefault(key, deque(maxlen=SAMPLES_KEPT)).append(observation.seconds)
        self._trim(self._latest_ms)
        return observations

    def _first_sighting(self, event_id: str) -> bool:
        if event_id in self._seen:
            self.duplicates += 1
            return False
        self._seen.add(event_id)
        self._seen_order.append(event_id)
        if len(self._seen_order) > SEEN_IDS_KEPT:
            self._seen.discard(self._seen_order.popleft())
        return True

    def _observe(self, event: Envelope, at: int) -> list[Observation]:
        payload: Any = event.payload
        if event.type == "ToolInvocationRequested":
            self._invocations[payload["invocationId"]] = (at, payload["tool"])
        elif event.type == "ToolInvocationResulted":
            requested = self._invocations.pop(payload["invocationId"], None)
            if requested is not None:
                return [Observation("tool", _seconds(requested[0], at), requested[1])]
            return []
        if event.type == "UserQueryReceived":
            self._turns[event.turn_id] = _Turn(received_ms=at)
            return []
        turn = self._turns.get(event.turn_id)
        if turn is None:  # a turn that began before this fold did, or already answered
            return []
        if event.type == "PlanGenerated":
            turn.planned_ms = at
            return _interval("routing", turn.received_ms, at)
        elif event.type == "ToolInvocationRequested" and turn.first_request_ms is None:
            turn.first_request_ms = at
            return _interval("dispatch", turn.planned_ms, at)
        elif event.type in ("PlanCompleted", "PlanFailed"):
            return self._plan_ended(turn, event, at)
        elif event.type == "FinalAnswerSynthesized":
            del self._turns[event.turn_id]
            outcome = str(payload.get("outcome", "unknown"))
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            self._answer_times.append(at)
            return [*_interval("synthesis", turn.ended_ms, at), *_interval("end_to_end", turn.received_ms, at)]
        return []

    @staticmethod
    def _plan_ended(turn: _Turn, event: Envelope, at: int) -> list[Observation]:
        turn.ended_ms = at
        if event.type == "PlanFailed" and event.payload.get("stage") == "planning":
            return _interval("routing", turn.received_ms, at)  # the planner's failure ends routing
        return _interval("execution", turn.first_request_ms, at)

    def _trim(self, now_ms: int) -> None:
        horizon = now_ms - self.window_seconds * 1000
        for times in (self._event_times, self._answer_times):
            while times and times[0] < horizon:
                times.popleft()

    def throughput(self, now_ms: int | None = None) -> tuple[float, float]:
        """(events/s, answered conversations/s) over the window ending at `now_ms` (default: the
        latest event's timestamp). Each answered turn counts as a conversation: in `agentlog bench`
        every conversation is one turn."""
        end = self._latest_ms if now_ms is None else now_ms
        horizon = end - self.window_seconds * 1000
        events = sum(1 for t in self._event_times if horizon <= t <= end)
        answers = sum(1 for t in self._answer_times if horizon <= t <= end)
        return events / self.window_seconds, answers / self.window_seconds

    def snapshot(self, now_ms: int | None = None) -> dict[str, Any]:
        """A JSON-ready view: counts, per-stage latency summaries (seconds), throughput."""
        events_per_s, conversations_per_s = self.throughput(now_ms)
        return {
            "events": self.events,
            "duplicates": self.duplicates,
            "conversations": len(self.conversations),
            "answers": dict(sorted(self.outcomes.items())),
            "turnsInFlight": len(self._turns),
            "throughput": {"windowSeconds": self.window_seconds, "eventsPerSecond": events_per_s,
                           "conversationsPerSecond": conversations_per_s},
            "latencySeconds": {key: summarize(self.samples[key]).to_json()
                               for key in sorted(self.samples, key=_stage_order)},
        }


def _stage_order(key: str) -> tuple[int, str]:
    """Stages in the order a turn goes through them, then the tools by name."""
    return (STAGES.index(key), "") if key in STAGES else (len(STAGES), key)


def _seconds(start_ms: int, end_ms: int) -> float:
    return max(0, end_ms - start_ms) / 1000


def _interval(stage: str, start_ms: int | None, end_ms: int) -> list[Observation]:
    return [] if start_ms is None else [Observation(stage, _seconds(start_ms, end_ms))]


def fold_events(events: Iterable[Envelope], window_seconds: float = DEFAULT_WINDOW_SECONDS) -> MetricsFold:
    """Fold a finite sequence of events (the CLI reading the log once, the benchmark, tests)."""
    fold = MetricsFold(window_seconds=window_seconds)
    for event in events:
        fold.apply(event)
    return fold
