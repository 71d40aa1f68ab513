"""`agentlog bench`: the load generator's command line."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench(
        scenario: Annotated[str, typer.Option(help="one-step, two-parallel, slow-effect, mix or local-chain")] = "one-step",
        count: Annotated[int, typer.Option("-n", "--count", help="closed loop: conversations to run")] = 100,
        concurrency: Annotated[int, typer.Option("-c", "--concurrency", help="closed loop: clients at once")] = 4,
        rate: Annotated[float | None, typer.Option(help="open loop: conversations per second")] = None,
        duration: Annotated[float, typer.Option(help="open loop: seconds per rate")] = 10.0,
        sweep: Annotated[str, typer.Option(help="open loop over several rates, e.g. 10,20,50,100")] = "",
        warmup: Annotated[int, typer.Option(help="conversations before measuring")] = 20,
        timeout: Annotated[float, typer.Option(help="seconds to wait for one answer")] = 60.0,
        via: Annotated[str, typer.Option("--via", help="ask through the web gateway at this URL")] = "",
        attach: Annotated[bool, typer.Option(help="use the running stack instead of starting one")] = False,
        hop: Annotated[int, typer.Option(help="round trips measuring the one-hop floor (0: skip)")] = 300,
        scale: Annotated[str, typer.Option(help="instances per service, e.g. orchestrator=2,tool-worker=2")] = "",
        out: Annotated[Path, typer.Option(help="where BENCHMARK.md, plots and raw JSON go")] = Path("bench/results"),
    ) -> None:
        """Load through the real pipeline: latency percentiles, per-stage latency, throughput, lag,
        CPU per conversation and memory per process, compared with the floor of one Kafka hop."""
        from agentlog.bench.report import write_report
        from agentlog.bench.runner import BenchConfig, run_bench
        from agentlog.bench.scenarios import SCENARIOS
        from agentlog.config import Settings

        if scenario not in SCENARIOS:
            raise typer.BadParameter(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
        if via and any(q.plan is not None for q in SCENARIOS[scenario].questions):
            raise typer.BadParameter(f"{scenario} sends its own plan, which the gateway does not take")
        from agentlog.bench.stack import parse_scale

        try:
            instances = parse_scale(scale)
        except ValueError as error:
            raise typer.BadParameter(str(error)) from None
        if attach and instances:
            raise typer.BadParameter("--scale starts the instances itself; it does not go with --attach")
        rates = tuple(float(r) for r in sweep.split(",") if r.strip())
        config = BenchConfig(SCENARIOS[scenario], count=count, concurrency=concurrency, rate=rate, duration=duration,
                             sweep=rates, warmup=warmup, timeout=timeout, via=via or None, attach=attach,
                             hop_round_trips=hop, scale=instances)
        work_dir = Settings.from_env().var_dir / "bench"
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:

            def track(description: str, total: int) -> Callable[[], None]:
                task = progress.add_task(description, total=total)
                return lambda: progress.advance(task)

            result = run_bench(config, dict(os.environ), work_dir, track)
        report = write_report(result, out)
        console.print(report.read_text().split("\n## ", 1)[0])
        console.print(f"[dim]report: {report}[/dim]")
