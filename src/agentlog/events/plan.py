"""The plan format: ordered tool steps with explicit dependencies and result references.

A plan is JSON inside `PlanGenerated`:

    {"steps": [{"id": "s1", "tool": "getExchangeRate", "arguments": {"from": "USD", "to": "ILS"},
                "dependsOn": []},
               {"id": "s2", "tool": "calculateMath",
                "arguments": {"expression": "500 - 2 * 40 * {{s1}}"}, "dependsOn": ["s1"]}],
     "finalAnswerSynthesisRequired": true}

An argument refers to an earlier step's result in one of two ways: a whole value `{"$ref": "s1"}`
(replaced by the step's result value, any JSON type) or a `{{s1}}` placeholder inside a string
(replaced by the value's text). Every referenced step must be listed in `dependsOn`.
LLM planners may write the seed's 1-based `<result_from_tool_N>` tokens; `normalize_seed_plan`
turns them into this form.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from agentlog.errors import AgentlogError

STEP_ID_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_-]{0,31})\s*\}\}")
SEED_PLACEHOLDER = re.compile(r"<result_from_tool_(\d+)>")
MAX_STEPS = 16


class PlanError(AgentlogError):
    """A plan is malformed: unknown reference, cycle, duplicate id, too many steps."""


@dataclass(frozen=True)
class PlanStep:
    id: str
    tool: str
    arguments: Mapping[str, Any]
    depends_on: tuple[str, ...] = ()
    timeout_ms: int | None = None
    max_attempts: int | None = None

    def to_json(self) -> dict[str, Any]:
        raw: dict[str, Any] = {"id": self.id, "tool": self.tool, "arguments": dict(self.arguments),
                               "dependsOn": list(self.depends_on)}
        if self.timeout_ms is not None:
            raw["timeoutMs"] = self.timeout_ms
        if self.max_attempts is not None:
            raw["maxAttempts"] = self.max_attempts
        return raw


@dataclass(frozen=True)
class Plan:
    steps: tuple[PlanStep, ...]
    synthesis_required: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"steps": [s.to_json() for s in self.steps],
                "finalAnswerSynthesisRequired": self.synthesis_required}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Plan:
        steps = tuple(
            PlanStep(id=s["id"], tool=s["tool"], arguments=dict(s.get("arguments", {})),
                     depends_on=tuple(s.get("dependsOn", ())), timeout_ms=s.get("timeoutMs"),
                     max_attempts=s.get("maxAttempts"))
            for s in raw["steps"]
        )
        plan = cls(steps=steps, synthesis_required=bool(raw.get("finalAnswerSynthesisRequired", True)))
        validate_plan(plan)
        return plan

    def step(self, step_id: str) -> PlanStep:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)


def referenced_steps(value: Any) -> set[str]:
    """Step ids that an argument value refers to, through `$ref` objects or `{{id}}` placeholders."""
    found: set[str] = set()
    if isinstance(value, str):
        found.update(PLACEHOLDER.findall(value))
    elif isinstance(value, Mapping):
        if set(value) == {"$ref"} and isinstance(value["$ref"], str):
            found.add(value["$ref"])
        else:
            for item in value.values():
                found |= referenced_steps(item)
    elif isinstance(value, list | tuple):
        for item in value:
            found |= referenced_steps(item)
    return found


def validate_plan(plan: Plan) -> None:
    """Raise PlanError unless ids are unique, dependencies point backwards and cover every reference."""
    if len(plan.steps) > MAX_STEPS:
        raise PlanError(f"a plan may have at most {MAX_STEPS} steps, this one has {len(plan.steps)}")
    seen: set[str] = set()
    for step in plan.steps:
        if not STEP_ID_PATTERN.match(step.id):
            raise PlanError(f"step id {step.id!r} must match {STEP_ID_PATTERN.pattern}")
        if step.id in seen:
            raise PlanError(f"step id {step.id!r} appears twice")
        for dep in step.depends_on:
            if dep not in seen:
                raise PlanError(f"step {step.id!r} depends on {dep!r}, which is not an earlier step")
        missing = referenced_steps(dict(step.arguments)) - set(step.depends_on)
        if missing:
            raise PlanError(f"step {step.id!r} refers to {sorted(missing)} without depending on them")
        seen.add(step.id)


def value_text(value: Any) -> str:
    """How a result value reads inside a string argument: numbers without float noise."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(Decimal(repr(value)).normalize(), "f")
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    import orjson

    return orjson.dumps(value).decode()


def resolve_arguments(arguments: Any, values: Mapping[str, Any]) -> Any:
    """Replace references with the values of completed steps (`values`: step id -> result value)."""
    if isinstance(arguments, str):
        return PLACEHOLDER.sub(lambda m: value_text(values[m.group(1)]), arguments)
    if isinstance(arguments, Mapping):
        if set(arguments) == {"$ref"} and isinstance(arguments["$ref"], str):
            return values[arguments["$ref"]]
        return {k: resolve_arguments(v, values) for k, v in arguments.items()}
    if isinstance(arguments, list | tuple):
        return [resolve_arguments(v, values) for v in arguments]
    return arguments


def _seed_to_refs(value: Any) -> Any:
    if isinstance(value, str):
        whole = SEED_PLACEHOLDER.fullmatch(value.strip())
        if whole:
            return {"$ref": f"s{int(whole.group(1))}"}
        return SEED_PLACEHOLDER.sub(lambda m: "{{s" + str(int(m.group(1))) + "}}", value)
    if isinstance(value, Mapping):
        return {k: _seed_to_refs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_seed_to_refs(v) for v in value]
    return value


def normalize_seed_plan(raw: Mapping[str, Any]) -> Plan:
    """Turn the seed's `{"plan": [{"tool", "parameters"}], "final_answer_synthesis_required"}` form
    (with 1-based `<result_from_tool_N>` tokens) into a validated Plan with ids s1..sN."""
    items = raw.get("plan")
    if not isinstance(items, list):
        raise PlanError("the plan must have a list under 'plan'")
    steps = []
    for index, item in enumerate(items, start=1):
        if not isinstance(item, Mapping) or not isinstance(item.get("tool"), str):
            raise PlanError(f"plan item {index} has no tool name")
        parameters = item.get("parameters") or {}
        if not isinstance(parameters, Mapping):
            raise PlanError(f"the plan is malformed: the parameters of plan item {index} are not an object")
        arguments = _seed_to_refs(dict(parameters))
        # references to anything but an earlier item are left for validate_plan to refuse by name
        refs = referenced_steps(arguments)
        deps = [f"s{n}" for n in range(1, len(items) + 1) if f"s{n}" in refs]
        steps.append(PlanStep(id=f"s{index}", tool=item["tool"], arguments=arguments, depends_on=tuple(deps)))
    plan = Plan(steps=tuple(steps),
                synthesis_required=bool(raw.get("final_answer_synthesis_required", True)))
    validate_plan(plan)
    return plan
