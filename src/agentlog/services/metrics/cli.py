"""`agentlog metrics`: the metrics service's view, or the same numbers computed from the log."""

from __future__ import annotations

import os
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

console = Console()


def _from_service(url: str) -> dict[str, Any] | None:
    try:
        response = httpx.get(url, timeout=2.0)
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    data: dict[str, Any] = response.json()
    return data


def _from_log() -> dict[str, Any]:
    """Read conversation-events once, fold it, and read the lag: what the service would show."""
    from agentlog.config import Settings
    from agentlog.errors import InvalidMessageError
    from agentlog.events.codec import Codec
    from agentlog.events.registry import SchemaRegistry
    from agentlog.kafka.reader import read_range
    from agentlog.kafka.topics import CONVERSATION_EVENTS
    from agentlog.services.metrics.compute import MetricsFold
    from agentlog.services.metrics.lag import LagReader, total_by_group

    settings = Settings.from_env()
    codec = Codec(SchemaRegistry(settings).read_all() or None)
    fold = MetricsFold()
    for message in read_range(settings, settings.topic(CONVERSATION_EVENTS)):
        try:
            envelope = codec.decode(message.value())
        except InvalidMessageError:
            continue  # the services dead-lettered it; metrics count what the pipeline accepted
        fold.apply(envelope)
    data = fold.snapshot()
    reader = LagReader(settings)
    try:
        data["lag"] = {"byGroup": total_by_group(reader.read())}
    finally:
        reader.close()
    return data


def render(data: dict[str, Any], source: str) -> None:
    answers = ", ".join(f"{k} {v}" for k, v in data["answers"].items()) or "none"
    rate = data["throughput"]
    console.print(f"[bold]{data['conversations']}[/bold] conversations, {data['events']} events "
                  f"({data['duplicates']} duplicates dropped), answers: {answers}, "
                  f"{data['turnsInFlight']} turns in flight  [dim]({source})[/dim]")
    console.print(f"throughput over the last {rate['windowSeconds']:.0f} s of the log: "
                  f"{rate['eventsPerSecond']:.1f} events/s, {rate['conversationsPerSecond']:.2f} conversations/s")
    table = Table("stage", "count", "mean ms", "p50 ms", "p95 ms", "p99 ms", "max ms")
    for stage, s in data["latencySeconds"].items():
        table.add_row(stage, str(s["count"]), *(f"{s[k] * 1000:.1f}" for k in ("mean", "p50", "p95", "p99", "max")))
    console.print(table)
    lag = Table("consumer group", "lag (messages)")
    for group, total in data.get("lag", {}).get("byGroup", {}).items():
        lag.add_row(group, str(total))
    console.print(lag)


def register(app: typer.Typer) -> None:
    @app.command("metrics")
    def metrics(
        url: Annotated[str, typer.Option(help="the metrics service's JSON endpoint")] = "",
        local: Annotated[bool, typer.Option(help="compute from the log even if the service is up")] = False,
    ) -> None:
        """Latency per stage, throughput and consumer lag: from the metrics service if it is up,
        else computed by reading conversation-events once."""
        endpoint = url or f"http://127.0.0.1:{os.environ.get('AGENTLOG_METRICS_PORT', '9464')}/metrics.json"
        data = None if local else _from_service(endpoint)
        if data is not None:
            render(data, f"from {endpoint}")
            return
        render(_from_log(), "computed from the log")
