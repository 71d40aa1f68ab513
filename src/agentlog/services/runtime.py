"""Build and run one service by name: the topics it reads and the handler it plugs into the loop."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from agentlog.config import Settings
from agentlog.events.registry import bootstrap_codec
from agentlog.kafka.eos import Handler, TransactionalLoop
from agentlog.kafka.topics import (
    CONVERSATION_EVENTS,
    SYNTHESIS_REQUESTS,
    TOOL_INVOCATION_REQUESTS,
    USER_COMMANDS,
)
from agentlog.state.store import PartitionStore
from agentlog.tools.registry import DEFAULT_REGISTRY, ToolRegistry, ToolSpec

log = logging.getLogger(__name__)

BUILTIN_TOOL_MODULES = ("agentlog.tools.math",)
TEST_TOOL_MODULES = ("agentlog.tools.testing",)


def load_tools() -> ToolRegistry:
    """Import the modules whose @tool functions this process hosts."""
    modules = list(BUILTIN_TOOL_MODULES)
    if os.environ.get("AGENTLOG_TEST_TOOLS") == "1":
        modules.extend(TEST_TOOL_MODULES)
    for module in modules:
        importlib.import_module(module)
    return DEFAULT_REGISTRY


def local_tools(registry: ToolRegistry) -> dict[str, ToolSpec]:
    """Tools the orchestrator runs in-process: those declared local, unless AGENTLOG_LOCAL_TOOLS
    names a different set ("" for none: every step then goes through the tool workers)."""
    chosen = os.environ.get("AGENTLOG_LOCAL_TOOLS")
    specs = {name: spec for name in registry.names() if (spec := registry.get(name)) is not None}
    if chosen is None:
        return {name: spec for name, spec in specs.items() if spec.local}
    wanted = {name.strip() for name in chosen.split(",") if name.strip()}
    return {name: spec for name, spec in specs.items() if name in wanted and spec.local}


def _router(settings: Settings) -> Handler:
    from agentlog.llm.planner import configured_planner
    from agentlog.services.router.service import RouterHandler

    return RouterHandler(configured_planner())  # the offline planner unless an LLM provider is configured


def _store(settings: Settings, service: str) -> PartitionStore:
    return PartitionStore(settings.state_dir / f"{service}-{settings.instance_id}")


def _orchestrator(settings: Settings) -> Handler:
    from agentlog.services.orchestrator.service import OrchestratorHandler

    return OrchestratorHandler(_store(settings, "orchestrator"), local_tools(load_tools()))


def _aggregator(settings: Settings) -> Handler:
    from agentlog.services.aggregator.fold import AggregatorDecider
    from agentlog.state.fold import FoldHandler

    return FoldHandler(AggregatorDecider(), _store(settings, "aggregator"))


def _tool_worker(settings: Settings) -> Handler:
    from agentlog.services.toolworker.service import OutcomeStore, ToolWorkerHandler, worker_name

    outcomes = OutcomeStore(settings.state_dir / f"tool-worker-{settings.instance_id}")
    return ToolWorkerHandler(load_tools(), outcomes, worker_name(settings.instance_id))


def _synthesis(settings: Settings) -> Handler:
    from agentlog.llm.synthesis import configured_synthesizer
    from agentlog.services.synthesis.service import SynthesisHandler

    return SynthesisHandler(configured_synthesizer())  # the template one unless an LLM provider is configured


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    topics: tuple[str, ...]
    build: Callable[[Settings], Handler]
    description: str


SERVICES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec("router", (USER_COMMANDS,), _router, "questions -> UserQueryReceived + PlanGenerated"),
        ServiceSpec("orchestrator", (CONVERSATION_EVENTS,), _orchestrator, "drives plans step by step"),
        ServiceSpec("tool-worker", (TOOL_INVOCATION_REQUESTS,), _tool_worker, "runs tool invocations"),
        ServiceSpec("aggregator", (CONVERSATION_EVENTS,), _aggregator, "collects results, requests synthesis"),
        ServiceSpec("synthesis", (SYNTHESIS_REQUESTS,), _synthesis, "writes the final answer"),
    )
}


def build_loop(name: str, settings: Settings) -> TransactionalLoop:
    spec = SERVICES[name]
    codec = bootstrap_codec(settings, name)
    return TransactionalLoop(settings, name, spec.topics, spec.build(settings), codec)


def run_service(name: str, settings: Settings) -> None:
    loop = build_loop(name, settings)
    loop.install_signal_handlers()
    log.info("%s started (instance %s)", name, settings.instance_id)
    loop.run()
    log.info("%s stopped", name)
