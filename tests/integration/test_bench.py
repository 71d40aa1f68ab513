"""A tiny closed-loop benchmark through the real pipeline: it finishes and writes its report.
No timing is asserted: the figures depend on the machine."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from agentlog.bench.report import write_report
from agentlog.bench.runner import BenchConfig, BenchResult, Phase, run_bench
from agentlog.bench.scenarios import SCENARIOS
from agentlog.config import Settings
from agentlog.kafka.client import base_config
from gateway_server import GatewayServer
from helpers import Stack


def completed_run(config: BenchConfig, env: dict[str, str], tmp_path: Path, answers: int) -> tuple[BenchResult, Phase]:
    """Run the bench; its one phase must have `answers` answers, all completed, and no timeout."""
    result = run_bench(config, env, tmp_path / "work")
    (phase,) = result.phases
    assert len(phase.answers) == answers and phase.timeouts == 0
    assert {a.outcome for a in phase.answers} == {"completed"}
    return result, phase


def test_a_small_closed_loop_run_answers_every_question_and_writes_its_report(
        agentlog_env: dict[str, str], tmp_path: Path) -> None:
    config = BenchConfig(SCENARIOS["one-step"], count=5, concurrency=2, warmup=2, hop_round_trips=20)
    result, phase = completed_run(config, agentlog_env, tmp_path, answers=5)
    assert len(result.hop_seconds) == 20
    assert set(phase.usage.cpu_seconds) >= {"router", "orchestrator", "tool-worker", "aggregator", "synthesis"}

    report = write_report(result, tmp_path / "results", command="agentlog bench -n 5 -c 2")
    text = report.read_text()
    assert "| closed n=5 c=2 | 5 | 0 |" in text and "end_to_end" in text and "## Machine" in text
    assert (tmp_path / "results" / "one-step-stages.png").stat().st_size > 0
    assert (tmp_path / "results" / f"{result.run_id}.json").exists()
    # The run's own topics are gone: the broker does not keep every run's partitions.
    admin = AdminClient(base_config(Settings.from_env(agentlog_env)))
    assert not [t for t in admin.list_topics(timeout=30).topics if t.startswith(f"bench-{result.run_id}.")]


def test_a_small_open_loop_run_resolves_every_turn_from_the_collector(
        agentlog_env: dict[str, str], tmp_path: Path) -> None:
    config = BenchConfig(SCENARIOS["one-step"], rate=10, duration=1, warmup=1, hop_round_trips=0)
    result, phase = completed_run(config, agentlog_env, tmp_path, answers=10)
    events = phase.events(result.events)  # decoded after the phase, from the bytes kept while reading
    asked = {e.turn_id for e in events if e.type == "UserQueryReceived"}
    assert {a.turn_id for a in phase.answers} == asked and len(asked) == 10
    for a in phase.answers:  # both clocks agree on how long each turn took
        assert a.latency > 0 and abs((a.received_wall - a.sent_wall) - a.latency) < 0.05


def test_a_run_through_the_gateway_asks_as_the_gateways_user_and_answers_every_question(
        stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTLOG_RATE_LIMIT_BURST", "100")  # the bench is one user: let it through
    with GatewayServer(stack.settings) as gateway:
        config = BenchConfig(SCENARIOS["one-step"], count=4, concurrency=2, warmup=1, hop_round_trips=0,
                             via=gateway.url, attach=True)
        result = run_bench(config, stack.env, tmp_path / "work")
    (phase,) = result.phases
    assert len(phase.answers) == 4 and phase.timeouts == 0
    assert {a.outcome for a in phase.answers} == {"completed"}
