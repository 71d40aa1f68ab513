"""generalChat: NotConfigured offline, a refusal for politics in every configuration, the model's reply."""

from __future__ import annotations

import pytest

from agentlog.llm.http import ProviderError
from agentlog.tools import chat
from agentlog.tools.chat import REFUSAL, general_chat
from agentlog.tools.registry import ToolError
from llm_fakes import ScriptedModel


def test_offline_it_says_no_model_is_configured_and_how_to_configure_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chat, "chat_model", lambda: None)
    with pytest.raises(ToolError) as failure:
        general_chat("Tell me a short joke about databases")
    assert failure.value.error_type == "NotConfigured" and not failure.value.retryable
    assert "no language model is configured" in failure.value.message
    assert "OLLAMA_HOST" in failure.value.message and "OPENAI_API_KEY" in failure.value.message


@pytest.mark.parametrize("configured", [False, True])
def test_voting_questions_are_refused_without_asking_a_model(monkeypatch: pytest.MonkeyPatch, configured: bool) -> None:
    model = ScriptedModel("fake", [])
    monkeypatch.setattr(chat, "chat_model", lambda: model if configured else None)
    out = general_chat("Who should I vote for?")
    assert out.value == REFUSAL and out.data["method"] == "refusal" and model.calls == []
    assert general_chat("למי להצביע בבחירות?").value == REFUSAL


def test_the_model_answers_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    model = ScriptedModel("fake", ["Why did the database break up? Too many relationships."])
    monkeypatch.setattr(chat, "chat_model", lambda: model)
    out = general_chat("Tell me a short joke about databases")
    assert out.value.startswith("Why did the database") and out.data["llm"]["provider"] == "fake"
    assert model.calls[0][-1] == {"role": "user", "content": "Tell me a short joke about databases"}


def test_a_failing_model_is_a_retryable_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chat, "chat_model", lambda: ScriptedModel("fake", [ProviderError("down", retryable=True)]))
    with pytest.raises(ToolError) as failure:
        general_chat("hello")
    assert failure.value.retryable and failure.value.error_type == "LLMUnavailable"
