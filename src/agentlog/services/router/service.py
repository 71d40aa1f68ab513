"""The router: turns each UserQueryReceived command into the turn's first events.

For a question it appends UserQueryReceived and then PlanGenerated (or PlanFailed when no plan can
be made, so the user still gets an answer that says why). A client may send its own plan with the
question; it is validated like any planner's. Planning happens here, once: the plan is recorded
as an event, so replay never calls a planner again.
"""

from __future__ import annotations

from datetime import datetime

from confluent_kafka import Message

from agentlog.errors import AgentlogError
from agentlog.events.envelope import Envelope, caused_by
from agentlog.events.plan import Plan, PlanError
from agentlog.kafka.eos import Handler, Output
from agentlog.kafka.topics import CONVERSATION_EVENTS
from agentlog.llm.audit import AuditedPlanner
from agentlog.services.router.planner import Planner, PlanningQuery, detect_language

SOURCE = "router"


class RouterHandler(Handler):
    def __init__(self, planner: Planner) -> None:
        self.planner = planner

    def handle(self, envelope: Envelope, message: Message, now: datetime) -> list[Output]:
        if envelope.kind != "command":
            raise ValueError(f"user-commands carries commands only, got event {envelope.type}")
        if envelope.type == "UserControl":
            return [self._event(envelope, "UserHistoryReset", {"command": envelope.payload["command"]}, now)]
        if envelope.type != "UserQueryReceived":
            raise ValueError(f"the router does not handle {envelope.type} commands")
        return route_question(self.planner, envelope, now)

    @staticmethod
    def _event(cause: Envelope, type_: str, payload: dict[str, object], now: datetime) -> Output:
        return Output(CONVERSATION_EVENTS, caused_by(cause, "event", type_, payload, source=SOURCE, now=now))


def route_question(planner: Planner, command: Envelope, now: datetime) -> list[Output]:
    """The events that start a turn: the question, then its plan or the reason there is none."""
    user_input = command.payload["userInput"]
    language = detect_language(user_input)
    outputs = [RouterHandler._event(command, "UserQueryReceived",
                                    {"userInput": user_input, "language": language}, now)]
    planner_name = "client" if "plan" in command.payload else planner.name
    llm: dict[str, object] | None = None
    try:
        if "plan" in command.payload:
            plan = Plan.from_json(command.payload["plan"])
        else:
            query = PlanningQuery(user_input=user_input, conversation_id=command.conversation_id,
                                  turn_id=command.turn_id, language=language)
            if isinstance(planner, AuditedPlanner):  # a model planner says who answered (it may fall back)
                planned = planner.plan_audited(query)
                plan, planner_name, llm = planned.plan, planned.planner, planned.llm
            else:
                plan = planner.plan(query)
    except (PlanError, AgentlogError) as error:
        outputs.append(RouterHandler._event(command, "PlanFailed", {
            "stage": "planning", "reason": f"planner {planner_name} could not plan this question: {error}",
            "failedStepIds": [], "succeededStepIds": []}, now))
        return outputs
    generated: dict[str, object] = {"plan": plan.to_json(), "planner": planner_name, "language": language}
    if llm is not None:
        generated["llm"] = llm
    outputs.append(RouterHandler._event(command, "PlanGenerated", generated, now))
    return outputs
