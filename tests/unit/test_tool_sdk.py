"""The tool SDK and tool pools: entry-point tools, keyword-named arguments, which worker takes what."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agentlog.errors import ConfigurationError
from agentlog.events.envelope import command, utc_now
from agentlog.services.runtime import load_tools
from agentlog.services.toolworker.pools import ToolSelection
from agentlog.services.toolworker.service import OutcomeStore, ToolWorkerHandler
from agentlog.tools.registry import DEFAULT_REGISTRY, ToolOutput, ToolRegistry, load_entry_point_tools, tool

PLUGIN = '''
from agentlog.tools.registry import ToolOutput, tool


@tool("shoutText", "Test plugin: upper-cases its text.")
def shout(text: str) -> ToolOutput:
    return ToolOutput(value=text.upper(), text=text.upper())
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An installed third-party distribution declaring an `agentlog.tools` entry point."""
    module = f"agentlog_plugin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(PLUGIN)
    info = tmp_path / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[agentlog.tools]\nshout = {module}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield module
    sys.modules.pop(module, None)


def test_entry_point_modules_are_imported_and_their_tools_registered(plugin: str) -> None:
    assert plugin in load_entry_point_tools()
    spec = DEFAULT_REGISTRY.get("shoutText")
    assert spec is not None and spec.function(text="hi").value == "HI"


def test_a_broken_entry_point_is_a_configuration_error(plugin: str, tmp_path: Path) -> None:
    (tmp_path / f"{plugin}.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigurationError, match="shout"):
        load_entry_point_tools()


def test_an_argument_named_by_a_python_keyword_is_renamed() -> None:
    registry = ToolRegistry()

    @tool("between", "test", registry, renamed={"from": "from_"})
    def between(from_: int, to: int = 10) -> ToolOutput:
        return ToolOutput(value=to - from_, text="")

    spec = registry.get("between")
    assert spec is not None
    assert spec.parameters["required"] == ["from"] and set(spec.parameters["properties"]) == {"from", "to"}
    assert spec.function(from_=3).value == 7


def test_agentlog_tools_narrows_what_a_worker_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTLOG_TOOLS", "getProductInformation")
    assert load_tools().names() == ["getProductInformation"]
    monkeypatch.setenv("AGENTLOG_TOOLS", "noSuchTool")
    with pytest.raises(ConfigurationError, match="noSuchTool"):
        load_tools()
    monkeypatch.delenv("AGENTLOG_TOOLS")
    assert {"calculateMath", "getExchangeRate", "getWeather", "getProductInformation", "ragGeneration",
            "analyzeReview", "generalChat"} <= set(load_tools().names())


def test_each_tool_is_taken_by_exactly_one_group() -> None:
    env = {"AGENTLOG_TOOL_POOLS": "getProductInformation"}
    general = ToolSelection.from_env(env)
    pool = ToolSelection.from_env(env | {"AGENTLOG_TOOLS": "getProductInformation"})
    assert (general.service_name, pool.service_name) == ("tool-worker", "tool-worker.getProductInformation")
    for name in ("getProductInformation", "calculateMath", "unknownTool"):
        assert general.takes(name) != pool.takes(name)


def test_a_pool_must_be_declared_for_every_worker() -> None:
    with pytest.raises(ConfigurationError, match="AGENTLOG_TOOL_POOLS"):
        ToolSelection.from_env({"AGENTLOG_TOOLS": "getWeather"})


def request(tool_name: str, arguments: dict[str, Any]) -> Any:
    return command("ToolInvocationRequested", conversation_id="c", turn_id=str(uuid.uuid4()), user_id="u",
                   source="test", payload={"invocationId": str(uuid.uuid4()), "idempotencyKey": str(uuid.uuid4()),
                                           "stepId": "s1", "attempt": 1, "tool": tool_name, "arguments": arguments,
                                           "timeoutMs": 30000})


def test_the_worker_skips_what_another_group_runs(tmp_path: Path) -> None:
    store = OutcomeStore(tmp_path / "outcomes")
    try:
        handler = ToolWorkerHandler(load_tools(), store, "w", ToolSelection(pooled=frozenset({"getWeather"})))
        assert handler.handle(request("getWeather", {"city": "Haifa"}), None, utc_now()) == []
        read_at = SimpleNamespace(topic=lambda: "requests", partition=lambda: 0, offset=lambda: 7)
        [result] = handler.handle(request("calculateMath", {"expression": "2+3"}), read_at, utc_now()).result(10)
        assert result.envelope.payload["output"]["value"] == 5
    finally:
        store.close()
