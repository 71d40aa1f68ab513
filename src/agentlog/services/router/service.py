"""The router: turns each UserQueryReceived command into the turn's first events.

For a question it appends UserQueryReceived and then PlanGenerated (or PlanFailed when no plan can
be made, so the user still gets an answer that says why). A client may send its own plan with the
question; it is validated like any planner's. Planning happens here, once: the plan is recorded
as an event, so replay never calls a planner again.

The router also reads `conversation-events` to fold each conversation's memory (router/memory.py)
into a LevelDB cache, recovered like any FoldHandler's. The two topics have the same partition count
and key, and the group uses the range assignor, so the events partition of a command's conversation
is always assigned to the same router: the memory of a question is local. A planned question's
PlanGenerated records the memory it was given; a reset the router writes is folded at once, so a
question right behind a reset is planned without the forgotten turns.

A plan of local steps only is run to its answer here, in the same transaction (router/inline.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from confluent_kafka import Message, TopicPartition

from agentlog.errors import AgentlogError, ConfigurationError
from agentlog.events.envelope import Envelope, caused_by, event_subjects
from agentlog.events.plan import Plan, PlanError
from agentlog.kafka.eos import Output
from agentlog.kafka.topics import CONVERSATION_EVENTS
from agentlog.llm.audit import is_audited_planner
from agentlog.services.router.inline import InlineTurns
from agentlog.services.router.memory import (
    MEMORY_EVENTS,
    MemoryDecider,
    MemoryLimits,
    MemoryState,
    RememberedTurn,
    bounded,
    with_memory,
)
from agentlog.services.router.planner import Planner, PlanningQuery, detect_language
from agentlog.state.fold import FoldHandler
from agentlog.state.store import PartitionStore

SOURCE = "router"
MEMORY_SUBJECTS = event_subjects(MEMORY_EVENTS)


class RouterHandler(FoldHandler[MemoryState]):
    def __init__(self, planner: Planner, store: PartitionStore, limits: MemoryLimits | None = None,
                 inline: InlineTurns | None = None) -> None:
        self.limits = limits or MemoryLimits()
        super().__init__(MemoryDecider(self.limits), store)
        self.planner = planner
        self.inline = inline

    def _events_topic(self) -> str:
        assert self.loop is not None, "bind() comes before consuming"
        return self.loop.settings.topic(CONVERSATION_EVENTS)

    def on_assign(self, partitions: list[TopicPartition]) -> None:
        events = [tp for tp in partitions if tp.topic == self._events_topic()]
        orphans = {tp.partition for tp in partitions if tp.topic != self._events_topic()}
        orphans -= {tp.partition for tp in events}
        if orphans:
            raise ConfigurationError(
                f"the router was given user-commands partitions {sorted(orphans)} without the same "
                "conversation-events partitions: both topics need the same partition count (range assignor)")
        super().on_assign(events)

    def on_revoke(self, partitions: list[TopicPartition]) -> None:
        super().on_revoke([tp for tp in partitions if tp.topic == self._events_topic()])

    def wants(self, subject: str) -> bool:
        """Every command; of the events only those the memory folds (the orchestrator dead-letters the rest)."""
        return subject.startswith("command.") or subject in MEMORY_SUBJECTS

    def handle(self, envelope: Envelope, message: Message, now: datetime) -> list[Output]:
        partition = message.partition()
        assert partition is not None
        if message.topic() == self._events_topic():
            return super().handle(envelope, message, now)  # wants() let only memory events through
        outputs = self._command(envelope, partition, now)
        for output in outputs:  # forget at once, not when the reset is read back
            if output.envelope.type == "UserHistoryReset":
                self._apply(partition, output.envelope, now)
        return outputs

    def memory(self, partition: int, conversation_id: str) -> tuple[RememberedTurn, ...]:
        """The window a question of this conversation is planned with now."""
        state = self.state(partition, conversation_id)
        return () if state is None else bounded(state.window, self.limits)

    def _command(self, envelope: Envelope, partition: int, now: datetime) -> list[Output]:
        if envelope.kind != "command":
            raise ValueError(f"user-commands carries commands only, got event {envelope.type}")
        if envelope.type == "UserControl":
            return [user_control(envelope, now)]
        if envelope.type != "UserQueryReceived":
            raise ValueError(f"the router does not handle {envelope.type} commands")
        outputs = route_question(self.planner, envelope, now, self.memory(partition, envelope.conversation_id))
        question, plan = outputs[0].envelope, outputs[-1].envelope
        if self.inline is not None and plan.type == "PlanGenerated":
            rest = self.inline.run(question, plan, now)
            if rest is not None:
                return [outputs[0], *rest]
        return outputs

    @staticmethod
    def _event(cause: Envelope, type_: str, payload: dict[str, object], now: datetime) -> Output:
        return Output(CONVERSATION_EVENTS, caused_by(cause, "event", type_, payload, source=SOURCE, now=now))


def user_control(command: Envelope, now: datetime) -> Output:
    """A reset forgets the conversation's history; approve, deny and cancel are recorded in their
    target turn (the command's turnId) for the orchestrator, which decides whether they apply.
    The command's id is in the event's id: each control of a turn is its own event."""
    if command.payload["command"] == "reset":
        return RouterHandler._event(command, "UserHistoryReset", {"command": "reset"}, now)
    return Output(CONVERSATION_EVENTS, caused_by(command, "event", "UserControlReceived", dict(command.payload),
                                                 source=SOURCE, now=now, id_parts=(command.id,)))


def route_question(planner: Planner, command: Envelope, now: datetime,
                   memory: Sequence[RememberedTurn] = ()) -> list[Output]:
    """The events that start a turn: the question, then its plan or the reason there is none.
    A planner's plan is given the conversation's `memory` and records it; a client's plan is run as sent."""
    user_input = command.payload["userInput"]
    language = detect_language(user_input)
    outputs = [RouterHandler._event(command, "UserQueryReceived",
                                    {"userInput": user_input, "language": language}, now)]
    planner_name = "client" if "plan" in command.payload else planner.name
    llm: dict[str, object] | None = None
    refused: tuple[str, ...] = ()
    try:
        if "plan" in command.payload:
            plan = Plan.from_json(command.payload["plan"])
        else:
            query = PlanningQuery(user_input=user_input, conversation_id=command.conversation_id,
                                  turn_id=command.turn_id, language=language,
                                  history=tuple((t.question, t.answer) for t in memory))
            if is_audited_planner(planner):  # a model planner says who answered (it may fall back)
                planned = planner.plan_audited(query)
                plan, planner_name, llm, refused = planned.plan, planned.planner, planned.llm, planned.refused
            else:
                plan = planner.plan(query)
    except (PlanError, AgentlogError) as error:
        outputs.append(RouterHandler._event(command, "PlanFailed", {
            "stage": "planning", "reason": f"planner {planner_name} could not plan this question: {error}",
            "failedStepIds": [], "succeededStepIds": []}, now))
        return outputs
    generated: dict[str, object] = {"planner": planner_name, "language": language}
    if "plan" not in command.payload:
        plan = with_memory(plan, memory)
        generated["memory"] = [t.to_json() for t in memory]
    generated["plan"] = plan.to_json()
    if llm is not None:
        generated["llm"] = llm
    if refused:  # a model's plans that named unknown tools or invalid arguments: refused, and kept here
        generated["refusedPlans"] = list(refused)
    outputs.append(RouterHandler._event(command, "PlanGenerated", generated, now))
    return outputs
