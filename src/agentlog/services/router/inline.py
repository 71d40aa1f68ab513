"""Turns the router finishes itself: plans made only of local steps, answered by the template.

Local tools are pure, deterministic and fast; the orchestrator already runs them inside its own
transaction. For a plan made only of them no other service has anything left to do, so the router
runs the same decisions in memory — the orchestrator's, the aggregator's and the template
synthesis — and writes the whole turn (question, plan marked `inline`, step requests and results,
PlanStepCompleted, PlanCompleted or PlanFailed, the answer) in the transaction that consumes the
question: two Kafka hops from question to answer instead of five (Temporal's local activities,
taken one step further). The events are those the orchestrated path writes, with the same derived
ids, so history, metrics and replay read them alike; the orchestrator and the aggregator record the
plan as inline without acting (orchestrator/decide.py, aggregator/fold.py) and skip the events after
it unread: each carries the turn's id in its `agentlog-inline-turn` header.

Anything else goes the orchestrated way: a step for a tool worker, an approval, a retry after a
back-off, or an answer a model must write. AGENTLOG_INLINE_TURNS=0 sends every turn that way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from agentlog.events.codec import INLINE_TURN_HEADER
from agentlog.events.envelope import Envelope
from agentlog.kafka.eos import Output
from agentlog.kafka.topics import CONVERSATION_EVENTS
from agentlog.llm.streaming import NullSink
from agentlog.services.aggregator.fold import AggregatorDecider
from agentlog.services.orchestrator.decide import ApprovalTools, LocalTools, OrchestratorDecider
from agentlog.services.synthesis.compose import Synthesizer, TemplateSynthesizer
from agentlog.services.synthesis.service import answer_event

SOURCE = "router"


@dataclass(frozen=True)
class InlineTurns:
    orchestrator: OrchestratorDecider
    synthesizer: Synthesizer

    @classmethod
    def from_env(cls, local_tools: LocalTools, approvals: ApprovalTools, synthesizer: Synthesizer,
                 env: Mapping[str, str] = os.environ) -> InlineTurns | None:
        """None when AGENTLOG_INLINE_TURNS=0 or no tool is local (nothing could run inline)."""
        if env.get("AGENTLOG_INLINE_TURNS", "1") == "0" or not local_tools:
            return None
        return cls(OrchestratorDecider(local_tools, approvals, source=SOURCE), synthesizer)

    def run(self, question: Envelope, plan: Envelope, now: datetime) -> list[Output] | None:
        """The turn's events from its plan on (the plan marked inline, the answer last), or None when
        the turn needs another service."""
        if plan.payload["plan"]["finalAnswerSynthesisRequired"] and not isinstance(self.synthesizer,
                                                                                   TemplateSynthesizer):
            return None  # a model writes the answer: the synthesis service calls it, off this loop
        decision = self.orchestrator.decide(self.orchestrator.initial(plan.conversation_id), plan, now)
        turn = decision.state.turns.get(plan.turn_id)
        if turn is None or turn.status == "running" or any(o.topic != CONVERSATION_EVENTS for o in decision.outputs):
            return None
        steps = [o.envelope for o in decision.outputs]
        aggregator = AggregatorDecider()
        state = aggregator.initial(plan.conversation_id)
        requests: list[Output] = []
        for event in (question, plan, *steps):
            folded = aggregator.decide(state, event, now)
            state, requests = folded.state, requests + folded.outputs
        if len(requests) != 1:
            return None
        answer = answer_event(self.synthesizer, requests[0].envelope.payload, steps[-1], now, NullSink(), SOURCE)
        marked = replace(plan, payload={**plan.payload, "inline": True})
        # The rest carries the turn's id in a header: readers that recorded the plan as inline skip it unread.
        settled = ((INLINE_TURN_HEADER, plan.turn_id.encode()),)
        return [Output(CONVERSATION_EVENTS, marked),
                *(Output(CONVERSATION_EVENTS, event, settled) for event in (*steps, answer))]
