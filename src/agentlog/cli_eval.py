"""The `agentlog eval` command group, shared so each evaluation (planner, retrieval) adds its own command."""

from __future__ import annotations

import typer

eval_app = typer.Typer(help="Score a component against a labelled set.", no_args_is_help=True)
