"""The bench's client plans are valid plans of tools the bench's services host."""

from __future__ import annotations

import importlib

import pytest

from agentlog.bench.scenarios import SCENARIOS
from agentlog.events.plan import Plan, validate_plan
from agentlog.services.runtime import BUILTIN_TOOL_MODULES, TEST_TOOL_MODULES
from agentlog.tools.registry import DEFAULT_REGISTRY


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_client_plan_of_a_scenario_is_valid_and_names_hosted_tools(name: str) -> None:
    for module in (*BUILTIN_TOOL_MODULES, *TEST_TOOL_MODULES):  # the bench runs the test tools too
        importlib.import_module(module)
    for question in SCENARIOS[name].questions:
        if question.plan is None:
            continue
        plan = Plan.from_json(question.plan)
        validate_plan(plan)
        assert all(DEFAULT_REGISTRY.get(step.tool) is not None for step in plan.steps)


def test_the_local_chain_feeds_each_step_the_one_before() -> None:
    plan = Plan.from_json(SCENARIOS["local-chain"].questions[0].plan)
    assert len(plan.steps) == 16 and {s.tool for s in plan.steps} == {"calculateMath"}
    for before, step in zip(plan.steps, plan.steps[1:], strict=False):
        assert step.depends_on == (before.id,) and f"{{{{{before.id}}}}}" in step.arguments["expression"]
