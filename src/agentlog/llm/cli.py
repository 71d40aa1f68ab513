"""`agentlog plan` and `agentlog eval planner`: the configured planner without a broker.

`plan` shows what the router would plan for one question (and who planned it). `eval planner` scores
a planner on a labelled JSONL set (`{"question": ..., "tools": [...]}` per line): a question counts
as right when the plan's multiset of tools equals the label's, since the order of independent steps
and the exact argument wording are free.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from agentlog.cli_eval import eval_app
from agentlog.errors import AgentlogError
from agentlog.llm.audit import PlannedBy, is_audited_planner
from agentlog.services.router.planner import Planner, PlanningQuery, detect_language


def plan_question(planner: Planner, question: str) -> PlannedBy:
    """What the router's planner makes of one question, with who made it."""
    query = PlanningQuery(user_input=question, conversation_id="cli", turn_id="cli", language=detect_language(question))
    if is_audited_planner(planner):
        return planner.plan_audited(query)
    return PlannedBy(planner.plan(query), planner.name, None)


@dataclass(frozen=True)
class Case:
    question: str
    tools: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    case: Case
    got: tuple[str, ...]
    planner: str
    error: str | None = None

    @property
    def correct(self) -> bool:
        return self.error is None and Counter(self.got) == Counter(self.case.tools)


def read_cases(path: Path) -> list[Case]:
    """The labelled questions of a JSONL file (blank lines skipped)."""
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        raw: Mapping[str, Any] = orjson.loads(line)
        if not isinstance(raw.get("question"), str) or not isinstance(raw.get("tools"), list):
            raise ValueError(f"{path}:{number}: each line needs a string 'question' and a list 'tools'")
        cases.append(Case(raw["question"], tuple(str(t) for t in raw["tools"])))
    return cases


def evaluate(planner: Planner, cases: Iterable[Case]) -> list[Outcome]:
    outcomes = []
    for case in cases:
        try:
            planned = plan_question(planner, case.question)
        except AgentlogError as error:
            outcomes.append(Outcome(case, (), planner.name, str(error)))
            continue
        outcomes.append(Outcome(case, tuple(s.tool for s in planned.plan.steps), planned.planner))
    return outcomes


def accuracy(outcomes: list[Outcome]) -> float:
    return sum(o.correct for o in outcomes) / len(outcomes) if outcomes else 0.0


def _planner(offline: bool) -> Planner:
    from agentlog.llm.planner import configured_planner
    from agentlog.services.router.planner import OfflinePlanner

    return OfflinePlanner() if offline else configured_planner()


def plan_command(
    question: Annotated[str, typer.Argument(help="the question to plan")],
    as_json: Annotated[bool, typer.Option("--json", help="print the plan and its audit as JSON")] = False,
    offline: Annotated[bool, typer.Option(help="use the offline planner even if an LLM is configured")] = False,
) -> None:
    """Print the plan the configured planner makes for QUESTION (no broker needed)."""
    try:
        planned = plan_question(_planner(offline), question)
    except AgentlogError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    if as_json:
        typer.echo(orjson.dumps({"plan": planned.plan.to_json(), "planner": planned.planner, "llm": planned.llm},
                                option=orjson.OPT_INDENT_2).decode())
        return
    typer.echo(f"planner: {planned.planner}" + (f" ({planned.llm['provider']}/{planned.llm['model']}, "
                                                  f"{planned.llm['latencyMs']:.0f} ms)" if planned.llm else ""))
    for step in planned.plan.steps:
        after = f"  after {', '.join(step.depends_on)}" if step.depends_on else ""
        typer.echo(f"{step.id}  {step.tool} {orjson.dumps(dict(step.arguments)).decode()}{after}")
    typer.echo(f"synthesis: {'yes' if planned.plan.synthesis_required else 'no'}")


def eval_planner_command(
    path: Annotated[Path, typer.Argument(help="JSONL: {\"question\": ..., \"tools\": [...]} per line",
                                         exists=True, dir_okay=False)],
    offline: Annotated[bool, typer.Option(help="score the offline planner even if an LLM is configured")] = False,
) -> None:
    """Exact tool-multiset accuracy of the planner on a labelled set; mismatches listed, accuracy last."""
    try:
        cases = read_cases(path)
    except (ValueError, orjson.JSONDecodeError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    outcomes = evaluate(_planner(offline), cases)
    for outcome in outcomes:
        if not outcome.correct:
            got = outcome.error or ", ".join(sorted(outcome.got))
            typer.echo(f"MISMATCH {outcome.case.question!r}: expected [{', '.join(sorted(outcome.case.tools))}], "
                       f"got [{got}] ({outcome.planner})")
    planners = Counter(o.planner for o in outcomes)
    typer.echo(f"{sum(o.correct for o in outcomes)}/{len(outcomes)} right; planned by "
               + ", ".join(f"{name} {count}" for name, count in planners.most_common()))
    typer.echo(f"accuracy: {accuracy(outcomes):.2f}")


def register(app: typer.Typer) -> None:
    """Add `plan` to the main app and `planner` to the shared `eval` group."""
    app.command("plan")(plan_command)
    eval_app.command("planner")(eval_planner_command)
