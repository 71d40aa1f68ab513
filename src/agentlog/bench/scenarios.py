"""Named workloads: what one benchmark conversation asks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Question:
    text: str
    plan: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Scenario:
    """`questions` are asked round-robin (the bench's services always host the test tools)."""

    name: str
    description: str
    questions: tuple[Question, ...]

    def question(self, index: int) -> Question:
        return self.questions[index % len(self.questions)]


ONE_STEP = Question("What is 12.5% of 240?")
TWO_PARALLEL = Question("What is 2+3 and what is 10*4?")
SLOW_EFFECT = Question("record one slow effect", {
    "steps": [{"id": "s1", "tool": "recordEffect", "arguments": {"label": "bench", "delayMs": 50}, "dependsOn": []}],
    "finalAnswerSynthesisRequired": True,
})
# Sixteen chained local steps: the orchestrator's own work (run in its transaction) outweighs the hops.
LOCAL_CHAIN = Question("sixteen chained local steps", {
    "steps": [{"id": f"s{n}", "tool": "calculateMath",
               "arguments": {"expression": "1 + 1" if n == 0 else f"{{{{s{n - 1}}}}} + 1"},
               "dependsOn": [] if n == 0 else [f"s{n - 1}"]} for n in range(16)],
    "finalAnswerSynthesisRequired": True,
})

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("one-step", "one calculateMath step from the offline planner", (ONE_STEP,)),
    Scenario("two-parallel", "two independent calculateMath steps", (TWO_PARALLEL,)),
    Scenario("slow-effect", "a client plan: recordEffect on a tool worker, 50 ms of work", (SLOW_EFFECT,)),
    Scenario("mix", "the three above, round-robin", (ONE_STEP, TWO_PARALLEL, SLOW_EFFECT)),
    Scenario("local-chain", "a client plan of 16 chained calculateMath steps (orchestrator-heavy with "
             "AGENTLOG_INLINE_TURNS=0)", (LOCAL_CHAIN,)),
)}
