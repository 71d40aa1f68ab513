"""BENCHMARK.md, plots and raw figures of one run, written into the results directory."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil

from agentlog.bench.runner import BenchResult, Phase
from agentlog.events.envelope import Envelope
from agentlog.kafka.broker import KAFKA_VERSION
from agentlog.services.metrics.compute import SEQUENTIAL_STAGES, Summary, fold_events, summarize

MB = 1024 * 1024


@dataclass(frozen=True)
class PhaseFigures:
    phase: Phase
    client: Summary
    throughput: float
    stages: dict[str, dict[str, Any]]
    breakdown: dict[str, float]  # mean seconds, stage by stage, client hops included
    cpu_per_conversation: float


def _breakdown(events: list[Envelope], phase: Phase, stages: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Where one conversation's time goes on average (means add up; percentiles would not)."""
    received = {e.turn_id: e.timestamp_ms / 1000 for e in events if e.type == "UserQueryReceived"}
    answered = {e.turn_id: e.timestamp_ms / 1000 for e in events if e.type == "FinalAnswerSynthesized"}
    to_router = [received[a.turn_id] - a.sent_wall for a in phase.answers if a.turn_id in received]
    to_client = [a.received_wall - answered[a.turn_id] for a in phase.answers if a.turn_id in answered]
    parts = {"command -> router": sum(to_router) / len(to_router) if to_router else 0.0}
    parts.update({stage: stages[stage]["mean"] for stage in SEQUENTIAL_STAGES if stage in stages})
    parts["answer -> client"] = sum(to_client) / len(to_client) if to_client else 0.0
    return parts


def figures(result: BenchResult, phase: Phase) -> PhaseFigures:
    events = phase.events(result.events)
    stages = fold_events(events).snapshot()["latencySeconds"]
    services_cpu = sum(s for name, s in phase.usage.cpu_seconds.items() if name != "bench-client")
    return PhaseFigures(phase, summarize(a.latency for a in phase.answers),
                        len(phase.answers) / phase.wall_seconds if phase.wall_seconds else 0.0, stages,
                        _breakdown(events, phase, stages), services_cpu / max(1, len(phase.answers)))


def machine() -> dict[str, str]:
    model = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import confluent_kafka

    return {"cpu": model, "cores": str(os.cpu_count()), "ram": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
            "kernel": platform.release(), "python": platform.python_version(), "kafka": KAFKA_VERSION,
            "confluent-kafka": str(confluent_kafka.__version__), "librdkafka": confluent_kafka.libversion()[0]}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def markdown(result: BenchResult, all_figures: list[PhaseFigures], command: str) -> str:
    config = result.config
    hop = summarize(result.hop_seconds)
    lines = [f"# agentlog bench: {config.scenario.name}", "",
             f"{config.scenario.description}; run `{result.run_id}`, "
             f"{'via the gateway ' + config.via if config.via else 'direct Kafka client'}, "
             f"warm-up {config.warmup} conversations"
             + "".join(f", {n} × {name}" for name, n in sorted(config.scale.items()) if n > 1) + ".", "",
             f"Command: `{command}`", "",
             "| phase | answers | timeouts | throughput (conv/s) | p50 ms | p95 ms | p99 ms | max ms | "
             "CPU s / conv | p50 / hop floor |", "|---|---|---|---|---|---|---|---|---|---|"]
    for f in all_figures:
        ratio = f"{f.client.p50 / hop.p50:.1f}x" if hop.count and hop.p50 else "n/a"
        lines.append(f"| {f.phase.label} | {len(f.phase.answers)} | {f.phase.timeouts} | {f.throughput:.1f} | "
                     f"{_ms(f.client.p50)} | {_ms(f.client.p95)} | {_ms(f.client.p99)} | {_ms(f.client.max)} | "
                     f"{f.cpu_per_conversation:.3f} | {ratio} |")
    lines += ["", "End-to-end is client-measured: command sent (or scheduled, open loop) to answer received.", ""]
    if hop.count:
        lines += [f"Hop floor (one transactional consume-transform-produce hop, {hop.count} round trips): "
                  f"p50 {_ms(hop.p50)} ms, p95 {_ms(hop.p95)} ms, p99 {_ms(hop.p99)} ms.", ""]
    for f in all_figures:
        lines += [f"## {f.phase.label}", "", "Per stage, from event timestamps:", "",
                  "| stage | count | mean ms | p50 ms | p95 ms | p99 ms | max ms |", "|---|---|---|---|---|---|---|"]
        for stage, s in f.stages.items():
            lines.append(f"| {stage} | {s['count']} | {_ms(s['mean'])} | {_ms(s['p50'])} | {_ms(s['p95'])} | "
                         f"{_ms(s['p99'])} | {_ms(s['max'])} |")
        lines += ["", "Where a conversation's time goes (means): "
                  + ", ".join(f"{k} {_ms(v)} ms" for k, v in f.breakdown.items()), "",
                  "| process | CPU s | peak PSS MB |", "|---|---|---|"]
        for name in sorted(f.phase.usage.cpu_seconds):
            pss = f.phase.usage.peak_pss.get(name)
            lines.append(f"| {name} | {f.phase.usage.cpu_seconds[name]:.2f} | {f'{pss / MB:.0f}' if pss else 'n/a'} |")
        lag = ", ".join(f"{g} {n}" for g, n in sorted(f.phase.usage.max_lag.items())) or "n/a"
        lines += ["", f"Max consumer lag sampled (messages, incl. 1 transaction marker per partition): {lag}", ""]
    lines += ["## Machine", ""] + [f"- {k}: {v}" for k, v in machine().items()] + [""]
    return "\n".join(lines)


def plot(result: BenchResult, all_figures: list[PhaseFigures], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    name = result.config.scenario.name
    swept = [f for f in all_figures if f.phase.offered_rate is not None]
    if len(swept) > 1:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        rates = [f.phase.offered_rate or 0.0 for f in swept]
        for label, key in (("p50", "p50"), ("p95", "p95"), ("p99", "p99")):
            ax.plot(rates, [getattr(f.client, key) * 1000 for f in swept], marker="o", label=label)
        ax.set(xlabel="offered load (conversations/s)", ylabel="end-to-end latency (ms)", yscale="log",
               title=f"agentlog {name}: latency vs offered load")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        written.append(out / f"{name}-latency-vs-load.png")
        fig.savefig(written[-1], dpi=120, bbox_inches="tight")
        plt.close(fig)
    first = all_figures[0]
    fig, ax = plt.subplots(figsize=(8, 2.6))
    left = 0.0
    for stage, seconds in first.breakdown.items():
        ax.barh([0], [seconds * 1000], left=[left], label=f"{stage} {seconds * 1000:.1f} ms")
        left += seconds * 1000
    ax.set(yticks=[], xlabel="ms (mean per conversation)", title=f"agentlog {name}: where a conversation's time goes "
           f"({first.phase.label})")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3, fontsize=8)
    written.append(out / f"{name}-stages.png")
    fig.savefig(written[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)
    return written


def write_report(result: BenchResult, out: Path, command: str | None = None) -> Path:
    """BENCHMARK.md (overwritten each run), the plots, and `<run id>.json` with the raw figures."""
    out.mkdir(parents=True, exist_ok=True)
    all_figures = [figures(result, phase) for phase in result.phases]
    command = command or " ".join(["agentlog", *sys.argv[1:]])
    report = out / "BENCHMARK.md"
    images = plot(result, all_figures, out)
    report.write_text(markdown(result, all_figures, command) + "\n"
                      + "".join(f"![{p.stem}]({p.name})\n" for p in images))
    raw = {"runId": result.run_id, "scenario": result.config.scenario.name, "command": command,
           "scale": dict(result.config.scale),
           "hopSeconds": summarize(result.hop_seconds).to_json(), "machine": machine(),
           "phases": [{"label": f.phase.label, "offeredRate": f.phase.offered_rate, "answers": len(f.phase.answers),
                       "timeouts": f.phase.timeouts, "throughput": f.throughput, "client": f.client.to_json(),
                       "stages": f.stages, "breakdown": f.breakdown, "cpuSeconds": f.phase.usage.cpu_seconds,
                       "cpuPerConversation": f.cpu_per_conversation, "peakPss": f.phase.usage.peak_pss,
                       "maxLag": f.phase.usage.max_lag} for f in all_figures]}
    (out / f"{result.run_id}.json").write_bytes(orjson.dumps(raw, option=orjson.OPT_INDENT_2))
    return report
