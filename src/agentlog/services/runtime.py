"""Build and run one service by name: the topics it reads and the handler it plugs into the loop."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from agentlog.config import Settings
from agentlog.errors import ConfigurationError
from agentlog.events.registry import bootstrap_codec
from agentlog.kafka.eos import BATCH_SIZE, Handler, TransactionalLoop
from agentlog.kafka.topics import (
    CONVERSATION_EVENTS,
    SYNTHESIS_REQUESTS,
    TOOL_INVOCATION_REQUESTS,
    USER_COMMANDS,
)
from agentlog.state.store import PartitionStore
from agentlog.tools.registry import DEFAULT_REGISTRY, ToolRegistry, ToolSpec, load_entry_point_tools

log = logging.getLogger(__name__)

TOOL_BATCH_SIZE = 8
BUILTIN_TOOL_MODULES = ("agentlog.tools.math", "agentlog.tools.exchange", "agentlog.tools.weather",
                        "agentlog.tools.products", "agentlog.tools.rag", "agentlog.tools.review",
                        "agentlog.tools.chat", "agentlog.tools.recall", "agentlog.tools.email")
TEST_TOOL_MODULES = ("agentlog.tools.testing",)


def load_tools() -> ToolRegistry:
    """Import the modules whose @tool functions this process knows: the built-in ones, the test tools
    when AGENTLOG_TEST_TOOLS=1, and those of installed `agentlog.tools` entry points (the tool SDK).

    AGENTLOG_TOOLS (comma-separated; set by `agentlog service tool-worker --tools`) narrows the result
    to the tools a dedicated worker hosts; unset, every known tool is returned.
    """
    modules = list(BUILTIN_TOOL_MODULES)
    if os.environ.get("AGENTLOG_TEST_TOOLS") == "1":
        modules.extend(TEST_TOOL_MODULES)
    for module in modules:
        importlib.import_module(module)
    load_entry_point_tools()
    wanted = sorted({name.strip() for name in os.environ.get("AGENTLOG_TOOLS", "").split(",") if name.strip()})
    if not wanted:
        return DEFAULT_REGISTRY
    unknown = [name for name in wanted if DEFAULT_REGISTRY.get(name) is None]
    if unknown:
        raise ConfigurationError(f"AGENTLOG_TOOLS names unknown tools {', '.join(unknown)}; "
                                 f"known: {', '.join(DEFAULT_REGISTRY.names())}")
    hosted = ToolRegistry()
    for name in wanted:
        spec = DEFAULT_REGISTRY.get(name)
        assert spec is not None
        hosted.register(spec)
    return hosted


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
    from agentlog.llm.synthesis import configured_synthesizer
    from agentlog.services.orchestrator.service import approval_tools
    from agentlog.services.router.inline import InlineTurns
    from agentlog.services.router.memory import MemoryLimits
    from agentlog.services.router.service import RouterHandler

    # The offline planner unless an LLM provider is configured; the store caches conversation memory.
    tools = load_tools()
    inline = InlineTurns.from_env(local_tools(tools), approval_tools(tools), configured_synthesizer())
    return RouterHandler(configured_planner(), _store(settings, "router"), MemoryLimits.from_env(), inline)


def _store(settings: Settings, service: str) -> PartitionStore:
    return PartitionStore(settings.state_dir / f"{service}-{settings.instance_id}")


def _orchestrator(settings: Settings) -> Handler:
    from agentlog.services.orchestrator.service import OrchestratorHandler, approval_tools

    tools = load_tools()
    return OrchestratorHandler(_store(settings, "orchestrator"), local_tools(tools), approval_tools(tools))


def _aggregator(settings: Settings) -> Handler:
    from agentlog.services.aggregator.fold import SUBJECTS, AggregatorDecider
    from agentlog.state.fold import FoldHandler

    return FoldHandler(AggregatorDecider(), _store(settings, "aggregator"), SUBJECTS,
                       inline_settled=AggregatorDecider.recorded_inline)


def _tool_worker(settings: Settings) -> Handler:
    from agentlog.services.toolworker.executor import concurrency_from_env
    from agentlog.services.toolworker.pools import ToolSelection
    from agentlog.services.toolworker.service import OutcomeStore, ToolWorkerHandler, worker_name

    selection = ToolSelection.from_env()
    outcomes = OutcomeStore(settings.state_dir / f"{selection.service_name}-{settings.instance_id}")
    return ToolWorkerHandler(load_tools(), outcomes, worker_name(settings.instance_id), selection,
                             concurrency_from_env())


def _synthesis(settings: Settings) -> Handler:
    from agentlog.llm.synthesis import configured_synthesizer
    from agentlog.services.synthesis.service import SynthesisHandler

    return SynthesisHandler(configured_synthesizer())  # the template one unless an LLM provider is configured


def _metrics(settings: Settings) -> None:
    from agentlog.services.metrics.service import run_metrics_service

    run_metrics_service(settings)


def _projection(settings: Settings) -> None:
    from agentlog.services.projections.service import run_projection_service

    run_projection_service(settings)


@dataclass(frozen=True)
class ServiceSpec:
    """A service: either a handler for the transactional loop (`build`) or, for a read-only
    service that keeps no offsets in Kafka (metrics, projections), its own `run` function."""

    name: str
    topics: tuple[str, ...]
    build: Callable[[Settings], Handler] | None
    description: str
    run: Callable[[Settings], None] | None = None
    # Messages per transaction at most. Tool calls are slow: a small batch commits each result
    # soon, and a crash re-runs few calls (their effects stay keyed, but starts and latency add up).
    batch_size: int = BATCH_SIZE


SERVICES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec("router", (USER_COMMANDS, CONVERSATION_EVENTS), _router,
                    "questions -> UserQueryReceived + PlanGenerated, with the conversation's memory"),
        ServiceSpec("orchestrator", (CONVERSATION_EVENTS,), _orchestrator, "drives plans step by step"),
        ServiceSpec("tool-worker", (TOOL_INVOCATION_REQUESTS,), _tool_worker, "runs tool invocations",
                    batch_size=TOOL_BATCH_SIZE),
        ServiceSpec("aggregator", (CONVERSATION_EVENTS,), _aggregator, "collects results, requests synthesis"),
        ServiceSpec("synthesis", (SYNTHESIS_REQUESTS,), _synthesis, "writes the final answer"),
        ServiceSpec("metrics", (CONVERSATION_EVENTS,), None, "latency, throughput and lag on /metrics",
                    run=_metrics),
        ServiceSpec("projection", (CONVERSATION_EVENTS,), None, "conversation history read model (SQLite, history.json)",
                    run=_projection),
    )
}


def build_loop(name: str, settings: Settings) -> TransactionalLoop:
    spec = SERVICES[name]
    if spec.build is None:
        raise ValueError(f"{name} does not run the transactional loop")
    codec = bootstrap_codec(settings, name)
    if name == "tool-worker":  # a dedicated pool needs its own consumer group (toolworker/pools.py)
        from agentlog.services.toolworker.pools import ToolSelection

        name = ToolSelection.from_env().service_name
    return TransactionalLoop(settings, name, spec.topics, spec.build(settings), codec, batch_size=spec.batch_size)


def run_service(name: str, settings: Settings) -> None:
    from agentlog.kafka.loop_metrics import serve_from_env

    run = SERVICES[name].run
    if run is not None:
        run(settings)
        return
    loop = build_loop(name, settings)
    loop.install_signal_handlers()
    port = serve_from_env()
    log.info("%s started (instance %s)%s", name, settings.instance_id, f"; metrics on :{port}" if port else "")
    loop.run()
    log.info("%s stopped", name)
