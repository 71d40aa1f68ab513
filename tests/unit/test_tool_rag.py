"""ragGeneration: extractive and cited offline; the model's cited answer when one is configured."""

from __future__ import annotations

import pytest

from agentlog.llm.http import ProviderError
from agentlog.tools import rag
from agentlog.tools.rag import rag_generation
from llm_fakes import ScriptedModel

PASSAGES = [
    "VoltRider E2 › Charging › Charging time\nWith the included charger a full charge takes about 6 hours. "
    "Charging from 10 % to 80 % takes about 3.5 hours.",
    "VoltRider E2 › FAQ › Can I take it on a plane?\nNo. The 720 Wh battery exceeds the airline limit.",
]


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rag, "chat_model", lambda: None)


def test_offline_answer_quotes_the_matching_sentences_with_citations(offline: None) -> None:
    out = rag_generation("How long does charging from 10% to 80% take?", PASSAGES)
    assert "extractive" in out.text.lower() and "no language model" in out.text
    assert "3.5 hours. [1]" in out.value and "plane" not in out.value
    assert [c["index"] for c in out.data["citations"]] == [1] and out.data["method"] == "extractive"


def test_offline_hebrew_question_still_finds_the_sentence(offline: None) -> None:
    out = rag_generation("כמה זמן לוקח לטעון מ-10% ל-80%?", PASSAGES)
    assert "3.5 hours" in out.value


def test_offline_says_when_nothing_matches(offline: None) -> None:
    out = rag_generation("What colour is the sky?", PASSAGES)
    assert "do not contain" in out.text and out.data["citations"] == []


def test_no_passages_is_said_plainly(offline: None) -> None:
    assert "No passages" in rag_generation("anything?", []).text


def test_with_a_model_the_answer_is_the_models_and_its_citations_are_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    model = ScriptedModel("fake", ["About 3.5 hours [1]; it cannot fly [2]."])
    monkeypatch.setattr(rag, "chat_model", lambda: model)
    out = rag_generation("Charge time, and can it fly?", PASSAGES)
    assert out.value == "About 3.5 hours [1]; it cannot fly [2]." and out.data["method"] == "llm"
    assert [c["index"] for c in out.data["citations"]] == [1, 2]
    prompt = model.calls[0][1]["content"]
    assert "[1] VoltRider E2" in prompt and "[2] VoltRider E2" in prompt


def test_a_failing_model_falls_back_to_the_extractive_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    model = ScriptedModel("fake", [ProviderError("down", retryable=True)])
    monkeypatch.setattr(rag, "chat_model", lambda: model)
    out = rag_generation("How long does charging take?", PASSAGES)
    assert out.data["method"] == "extractive" and "unavailable" in out.data["note"]
