"""The LLM planner: asks the configured models for a plan, checks it, and falls back to the rules.

The prompt carries the tool catalogue (names, descriptions, parameter schemas, from the tool
registry), the plan's JSON schema and few-shot examples in English and Hebrew. A reply counts only
if it parses, is a valid plan (native form, or the seed's `{"plan": [...]}` form) and calls listed
tools with arguments their schemas accept; otherwise the model gets the error back once to repair
its reply. A provider that fails or cannot repair hands over to the next one and, after the last,
to the offline planner: a configured model never leaves a question without a plan. Who made the
plan, and the model's latency and tokens, travel with it (PlannedBy) into PlanGenerated.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema
import orjson

from agentlog.events.plan import Plan, PlanError, normalize_seed_plan
from agentlog.llm.audit import PlannedBy, llm_audit
from agentlog.llm.base import ChatMessage, ChatModel, Completion, LLMUnavailable
from agentlog.llm.chain import chain_members, configured_chat_model
from agentlog.llm.prompts import PLANNER_EXAMPLES, PLANNER_RULES
from agentlog.services.router.planner import OfflinePlanner, Planner, PlanningQuery

log = logging.getLogger(__name__)


def plan_schema(tool_names: Sequence[str]) -> dict[str, Any]:
    """The plan definition of definitions.json, self-contained, with `tool` limited to `tool_names`
    so a grammar-constrained server cannot even write an unknown tool."""
    raw = orjson.loads(resources.files("agentlog.events.schemas").joinpath("definitions.json").read_bytes())
    definitions: dict[str, Any] = raw["definitions"]

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/definitions/"):
                return inline(definitions[node["$ref"].removeprefix("#/definitions/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    schema: dict[str, Any] = inline(definitions["plan"])
    step = schema["properties"]["steps"]["items"]["properties"]
    step["tool"] = {"enum": list(tool_names)}
    schema["properties"]["steps"]["minItems"] = 1
    return schema


@cache
def _validator(schema_json: str) -> Any:
    return fastjsonschema.compile(json.loads(schema_json))


def _validate(schema: Mapping[str, Any], value: Any, what: str) -> None:
    try:
        _validator(json.dumps(schema, sort_keys=True))(value)
    except fastjsonschema.JsonSchemaValueException as error:
        raise PlanError(f"{what}: {error.message}") from error


def _json_object(text: str) -> dict[str, Any]:
    """The outermost {...} of a reply (models wrap JSON in prose or code fences), read leniently:
    small models leave raw newlines inside strings."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise PlanError("the reply holds no JSON object")
    try:
        value = json.loads(text[start:end + 1], strict=False)
    except json.JSONDecodeError as error:
        raise PlanError(f"the reply is not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise PlanError("the reply is not a JSON object")
    return value


def check_tools(plan: Plan, catalogue: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise PlanError unless every step calls a listed tool with arguments its schema accepts.
    An argument that is a whole `{"$ref": ...}` is checked only for presence: its type is known
    only when the earlier step has run."""
    if not plan.steps:
        raise PlanError("a plan needs at least one step")
    for step in plan.steps:
        parameters = catalogue.get(step.tool)
        if parameters is None:
            raise PlanError(f"step {step.id} calls {step.tool!r}, which is not a tool; the tools are "
                            f"{', '.join(sorted(catalogue))}")
        schema = dict(parameters)
        properties = dict(schema.get("properties", {}))
        for key, value in step.arguments.items():
            if isinstance(value, Mapping) and set(value) == {"$ref"} and key in properties:
                properties[key] = {}
        schema["properties"] = properties
        _validate(schema, dict(step.arguments), f"step {step.id} ({step.tool}) arguments")


def parse_plan(text: str, catalogue: Mapping[str, Mapping[str, Any]], schema: Mapping[str, Any]) -> Plan:
    """A model's reply as a checked Plan; PlanError says what is wrong, in words the model can act on."""
    raw = _json_object(text)
    if "plan" in raw and "steps" not in raw:
        plan = normalize_seed_plan(raw)
    else:
        _validate(schema, raw, "the plan")
        plan = Plan.from_json(raw)
    check_tools(plan, catalogue)
    return plan


class InvalidPlanReply(LLMUnavailable):
    """A provider answered, but not with a usable plan even after one repair."""


class LLMPlanner:
    """Plans with the given models in order (normally a chain's members), then with `fallback`."""

    name = "llm"

    def __init__(self, models: Sequence[ChatModel], catalogue: Sequence[Mapping[str, Any]], *,
                 fallback: Planner | None = None, max_tokens: int = 1024) -> None:
        self.models = tuple(models)
        self.tools = {str(entry["name"]): dict(entry.get("parameters", {})) for entry in catalogue}
        self.schema = plan_schema(sorted(self.tools))
        self.fallback = fallback or OfflinePlanner()
        self.max_tokens = max_tokens
        self._system = self._system_prompt(catalogue)
        self._examples = [(q, p) for q, p in PLANNER_EXAMPLES if self._usable(p)]

    def plan(self, query: PlanningQuery) -> Plan:
        return self.plan_audited(query).plan

    def plan_audited(self, query: PlanningQuery) -> PlannedBy:
        refused: list[str] = []
        if query.user_input.strip() and self.models and self.tools:
            messages = self.messages(query)
            failures: list[str] = []
            for model in self.models:
                try:
                    return replace(self._ask(model, messages, refused), refused=tuple(refused))
                except LLMUnavailable as error:
                    failures.append(str(error))
            log.warning("LLM planning failed, using %s: %s", self.fallback.name, "; ".join(failures))
        return PlannedBy(self.fallback.plan(query), self.fallback.name, None, tuple(refused))

    def messages(self, query: PlanningQuery) -> list[ChatMessage]:
        messages: list[ChatMessage] = [{"role": "system", "content": self._system}]
        for question, plan in self._examples:
            messages.append({"role": "user", "content": question})
            messages.append({"role": "assistant", "content": orjson.dumps(plan.to_json()).decode()})
        question = query.user_input.strip()
        if query.history:  # the router's memory window, already bounded and recorded in PlanGenerated
            earlier = "\n".join(f"Q: {q}\nA: {a}" for q, a in query.history)
            question = f"Earlier in this conversation:\n{earlier}\n\nQuestion: {question}"
        messages.append({"role": "user", "content": question})
        return messages

    def _ask(self, model: ChatModel, messages: list[ChatMessage], refused: list[str]) -> PlannedBy:
        """One call, and one repair call if the reply is not a usable plan; each refused reply's
        reason is appended to `refused`, to be recorded with whatever plan is made in the end."""
        completions: list[Completion] = []
        conversation = list(messages)
        while True:
            completion = model.complete(conversation, json_schema=self.schema, max_tokens=self.max_tokens)
            completions.append(completion)
            try:
                plan = parse_plan(completion.text, self.tools, self.schema)
            except PlanError as error:
                refused.append(f"{model.name}: {error}")
                if len(completions) > 1:
                    raise InvalidPlanReply(f"{model.name}: no valid plan after one repair: {error}") from error
                log.info("LLM plan from %s rejected, asking for a repair: %s", model.name, error)
                conversation.append({"role": "assistant", "content": completion.text})
                conversation.append({"role": "user", "content": f"That reply is not a valid plan: {error}. "
                                     "Reply with the corrected JSON object only."})
                continue
            return PlannedBy(plan, self.name, llm_audit(completions))

    def _usable(self, example: Plan) -> bool:
        """Examples that call tools this process does not list (or with other arguments) would teach
        the model to write plans that are then rejected: they are left out."""
        try:
            check_tools(example, self.tools)
        except PlanError:
            return False
        return True

    def _system_prompt(self, catalogue: Sequence[Mapping[str, Any]]) -> str:
        tools = "\n".join(orjson.dumps({"name": e["name"], "description": e.get("description", ""),
                                        "parameters": e.get("parameters", {})}).decode() for e in catalogue)
        return (f"{PLANNER_RULES}\n\nThe tools:\n{tools}\n\n"
                f"The reply's JSON schema:\n{orjson.dumps(self.schema).decode()}")


def configured_planner(env: Mapping[str, str] | None = None) -> Planner:
    """The LLM planner over the configured providers and this process's tools, else the offline one."""
    model = configured_chat_model(env)
    if model is None:
        return OfflinePlanner()
    from agentlog.services.runtime import load_tools

    return LLMPlanner(chain_members(model), load_tools().catalogue())
