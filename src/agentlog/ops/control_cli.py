"""`agentlog approve|deny|cancel TURN_ID --conversation CID`: a person's control over a running turn.

Each sends one UserControl command for the turn, then waits for the orchestrator's reaction in the
log (ApprovalDecided or TurnCancelled) and prints it. None within --wait seconds means the turn was
not waiting for it (already finished, or nothing to approve): the command is recorded and ignored.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from agentlog.events.envelope import Envelope

console = Console()

REACTIONS = {"approve": "ApprovalDecided", "deny": "ApprovalDecided", "cancel": "TurnCancelled"}

TurnArgument = Annotated[str, typer.Argument(help="the turn (its id is printed by `agentlog ask`)")]
ConversationOption = Annotated[str, typer.Option("--conversation", help="the turn's conversation id")]
UserOption = Annotated[str, typer.Option("--user", help="who decides (recorded in the log)")]
ReasonOption = Annotated[str | None, typer.Option("--reason", help="why (recorded in the log)")]
StepOption = Annotated[str | None, typer.Option("--step", help="the waiting step decided (needed when several wait)")]
WaitOption = Annotated[float, typer.Option("--wait", help="seconds to wait for the orchestrator's reaction")]


def reaction(command: str, event: Envelope, turn_id: str) -> bool:
    """True when `event` is the orchestrator's answer to `command` for the turn."""
    return event.turn_id == turn_id and event.type == REACTIONS[command]


def _send(command: str, turn_id: str, conversation: str, user: str, reason: str | None, wait: float,
          step: str | None = None) -> None:
    from agentlog.config import Settings
    from agentlog.conversation import ConversationClient, EventWatcher
    from agentlog.errors import AgentlogError
    from agentlog.events.codec import Codec
    from agentlog.events.registry import SchemaRegistry
    from agentlog.ops.replay import control_summary

    settings = Settings.from_env()
    try:
        codec = Codec(SchemaRegistry(settings).read_all() or None)
        watcher = EventWatcher(settings, codec)
        try:
            ConversationClient(settings, codec).control(conversation, user, command, turn_id=turn_id, reason=reason,
                                                        step_id=step)
            console.print(f"sent {command} for turn {turn_id}")
            for event in watcher.events(wait):
                if event.conversation_id == conversation and reaction(command, event, turn_id):
                    console.print(f"{event.type}: {control_summary(event)}")
                    return
        finally:
            watcher.close()
    except AgentlogError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from error
    console.print(f"[yellow]no {REACTIONS[command]} within {wait:.0f} s[/yellow]: the turn was not waiting for "
                  f"this (finished, or nothing to approve); the command is recorded and ignored")
    raise typer.Exit(1)


def approve(turn_id: TurnArgument, conversation: ConversationOption, user: UserOption = "cli-user",
            reason: ReasonOption = None, wait: WaitOption = 15.0, step: StepOption = None) -> None:
    """Approve the turn's pending approval: the waiting step runs."""
    _send("approve", turn_id, conversation, user, reason, wait, step)


def deny(turn_id: TurnArgument, conversation: ConversationOption, user: UserOption = "cli-user",
         reason: ReasonOption = None, wait: WaitOption = 15.0, step: StepOption = None) -> None:
    """Deny the turn's pending approval: the step fails, and the answer says it was denied."""
    _send("deny", turn_id, conversation, user, reason, wait, step)


def cancel(turn_id: TurnArgument, conversation: ConversationOption, user: UserOption = "cli-user",
           reason: ReasonOption = None, wait: WaitOption = 15.0) -> None:
    """Cancel a running turn: nothing more is dispatched, and the answer says it was cancelled."""
    _send("cancel", turn_id, conversation, user, reason, wait)


def register(app: typer.Typer) -> None:
    """Called by agentlog.cli: adds `approve`, `deny` and `cancel`."""
    for command in (approve, deny, cancel):
        app.command(command.__name__)(command)
