"""The labelled planner set, the offline planner's accuracy on it, and the `plan` / `eval planner` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentlog.cli import app
from agentlog.llm.cli import accuracy, evaluate, read_cases
from agentlog.services.router.planner import OfflinePlanner
from llm_fakes import ollama_reply, serving

QUESTIONS = Path(__file__).resolve().parent.parent / "data" / "planner_questions.jsonl"
LLM_ENV = ("OLLAMA_HOST", "OPENAI_API_KEY", "OPENAI_BASE_URL")


@pytest.fixture
def offline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LLM_ENV:
        monkeypatch.delenv(name, raising=False)


def test_the_labelled_set_covers_english_and_the_hebrew_examples() -> None:
    cases = read_cases(QUESTIONS)
    assert len(cases) >= 60
    assert sum(any("\u05d0" <= ch <= "\u05ea" for ch in c.question) for c in cases) >= 10
    assert "לדנה יש 350 ₪ והיא קונה אוזניות ב-60$, כמה יישאר לה?" in {c.question for c in cases}


def test_offline_planner_accuracy_is_at_least_90_percent() -> None:
    outcomes = evaluate(OfflinePlanner(), read_cases(QUESTIONS))
    misses = [(o.case.question, o.got) for o in outcomes if not o.correct]
    assert accuracy(outcomes) >= 0.90, misses


def test_eval_planner_lists_mismatches_and_ends_with_the_accuracy(tmp_path: Path, offline_env: None) -> None:
    cases = tmp_path / "set.jsonl"
    cases.write_text(json.dumps({"question": "What is 2+3?", "tools": ["calculateMath"]}) + "\n\n"
                     + json.dumps({"question": "What is 2+3?", "tools": ["getWeather"]}) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["eval", "planner", str(cases)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == "accuracy: 0.50"
    assert lines[0].startswith("MISMATCH 'What is 2+3?': expected [getWeather], got [calculateMath]")


def test_plan_json_with_a_configured_provider(monkeypatch: pytest.MonkeyPatch, offline_env: None) -> None:
    plan = {"steps": [{"id": "s1", "tool": "calculateMath", "arguments": {"expression": "2+3"}, "dependsOn": []}],
            "finalAnswerSynthesisRequired": False}
    with serving(ollama_reply(json.dumps(plan), prompt_tokens=50, completion_tokens=10)) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        result = CliRunner().invoke(app, ["plan", "What is 2+3?", "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["plan"] == plan
    assert (printed["planner"], printed["llm"]["provider"], printed["llm"]["promptTokens"]) == ("llm", "ollama", 50)


def test_plan_offline(offline_env: None) -> None:
    result = CliRunner().invoke(app, ["plan", "What's the weather in Haifa?"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:2] == ["planner: offline-rules", 's1  getWeather {"city":"Haifa"}']
