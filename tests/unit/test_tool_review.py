"""analyzeReview: the offline lexicon (English, Hebrew, negation, aspects) and the model's JSON."""

from __future__ import annotations

import json

import pytest

from agentlog.tools import review
from agentlog.tools.review import analyze_review, lexicon_analysis
from llm_fakes import ScriptedModel


def aspects(text: str) -> dict[str, str]:
    return {a["aspect"]: a["sentiment"] for a in lexicon_analysis(text)["aspects"]}


def test_mixed_english_review_gets_an_aspect_each() -> None:
    result = lexicon_analysis("battery died in a week, but the screen is gorgeous")
    assert aspects("battery died in a week, but the screen is gorgeous") == {"battery": "negative",
                                                                             "screen": "positive"}
    assert result["sentiment"] == "neutral" and result["mixed"]


def test_hebrew_review_with_prefixes() -> None:
    found = aspects("המסך מדהים אבל מתחמם בטעינה")
    assert found["screen"] == "positive" and found["battery"] == "negative" and found["heat"] == "negative"


@pytest.mark.parametrize(("text", "label"), [
    ("The delivery was not good", "negative"), ("not bad at all for the price", "positive"),
    ("הסוללה לא טובה", "negative"), ("Excellent quality, I love it", "positive"),
    ("It arrived on Tuesday", "neutral"), ("המשלוח היה מהיר ומעולה", "positive"),
])
def test_overall_sentiment_with_negation(text: str, label: str) -> None:
    assert lexicon_analysis(text)["sentiment"] == label


def test_offline_tool_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(review, "chat_model", lambda: None)
    out = analyze_review("Great screen, terrible battery, too expensive")
    assert set(out.value) == {"sentiment", "score", "aspects"} and out.value["sentiment"] == "negative"
    assert -1 <= out.value["score"] < 0 and out.data["method"] == "lexicon"
    assert "screen positive" in out.text and "battery negative" in out.text


def test_model_json_is_used_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    reply = {"sentiment": "positive", "score": 0.8, "aspects": [{"aspect": "camera", "sentiment": "positive"}]}
    monkeypatch.setattr(review, "chat_model", lambda: ScriptedModel("fake", [f"Sure: {json.dumps(reply)}"]))
    out = analyze_review("the photos are wonderful")
    assert out.value == reply and out.data["method"] == "llm"


def test_unusable_model_reply_falls_back_to_the_lexicon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(review, "chat_model", lambda: ScriptedModel("fake", ['{"sentiment": "great"}']))
    out = analyze_review("terrible delivery")
    assert out.value["sentiment"] == "negative" and out.data["method"] == "lexicon" and "note" in out.data
