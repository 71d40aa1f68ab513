"""`agentlog projections rebuild`: refold the history read model from offset 0 and swap it in."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

console = Console()
projections_app = typer.Typer(help="Read models folded from the event store.", no_args_is_help=True)


@projections_app.command("rebuild")
def rebuild_command(
    workers: Annotated[int | None, typer.Option(
        min=1, help="processes that each fold a share of the partitions (default: AGENTLOG_REBUILD_WORKERS, "
        "else one per CPU; 1 folds the whole log in this process)")] = None,
) -> None:
    """Rebuild the history projection from the start of conversation-events into a fresh database,
    then swap it in (a running projection service picks it up at its next batch)."""
    from agentlog.config import Settings
    from agentlog.errors import AgentlogError
    from agentlog.services.projections.service import codec_from_registry, rebuild
    from agentlog.services.projections.store import history_db_path

    settings = Settings.from_env()
    try:
        report = rebuild(settings, codec_from_registry(settings), workers)
    except AgentlogError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from error
    position = ", ".join(f"{p}:{o}" for p, o in sorted(report.offsets.items())) or "empty log"
    skipped = f", {report.invalid} invalid skipped" if report.invalid else ""
    console.print(f"rebuilt {history_db_path(settings)} from {report.messages} messages{skipped} "
                  f"(next offsets {position})")


def register(app: typer.Typer) -> None:
    """Called by agentlog.cli: adds the `projections` command group."""
    app.add_typer(projections_app, name="projections")
