"""`agentlog eval retrieval FILE`: recall@3 of BM25 and hybrid product retrieval on a labelled set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from agentlog.cli_eval import eval_app

console = Console()


def eval_retrieval_command(
    file: Annotated[Path, typer.Argument(help="labelled questions, JSON lines (tests/data/retrieval.jsonl)")],
    k: Annotated[int, typer.Option(help="passages considered per question")] = 3,
    modes: Annotated[str, typer.Option(help="comma-separated retrieval modes to score")] = "bm25,hybrid",
    misses: Annotated[bool, typer.Option(help="list the questions each mode missed")] = False,
) -> None:
    """Print recall@k per retrieval mode over the product documents (AGENTLOG_PRODUCTS_DIR or data/products)."""
    from agentlog.errors import ConfigurationError
    from agentlog.retrieval.evaluate import load_labels, recall_at_k

    labels = load_labels(file)
    for mode in (m.strip() for m in modes.split(",") if m.strip()):
        try:
            recall = recall_at_k(labels, mode, k)
        except (ConfigurationError, ImportError) as error:
            console.print(f"{mode}: unavailable ({error})")
            continue
        console.print(f"{mode}: recall@{k} = {recall.value:.3f} ({recall.found}/{recall.total})")
        for question, got in recall.misses if misses else ():
            console.print(f"  missed: {question!r} -> {', '.join(got) or 'nothing'}")


def register(app: typer.Typer) -> None:
    """Add `retrieval` to the shared `eval` group (cli_eval.py); `app` is the root CLI, which adds the group."""
    eval_app.command("retrieval")(eval_retrieval_command)
