"""The analyzeReview tool: overall sentiment with a score, and the sentiment of each aspect named.

With a language model configured, the model returns JSON (sentiment, score, aspects). Otherwise,
or when the model fails or answers unusably, a lexicon method runs offline: the review is split into
clauses (at punctuation and at "but"/"אבל"), each clause scores the sentiment words it holds (English
and Hebrew, a Hebrew word may carry one-letter prefixes), a negator within the two words before a
sentiment word flips it ("not good", "לא טוב"), and each aspect named in a clause takes that clause's
sentiment. Score is in [-1, 1]; above 0.2 is positive, below -0.2 negative, neutral between.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from agentlog.tools.llm_access import chat_model
from agentlog.tools.registry import ToolOutput, tool


def _words(text: str) -> list[str]:
    """A word list written as one string: long lexicons stay readable."""
    return text.split()

log = logging.getLogger(__name__)

POSITIVE = frozenset(_words("""good great excellent amazing awesome gorgeous beautiful love loved loves perfect fast
quick bright sharp solid reliable comfortable easy happy recommend recommended fantastic superb nice smooth
best impressive worth quiet sturdy long-lasting stunning wonderful pleased satisfied cheap affordable
טוב טובה טובים טובות מעולה מעולים מדהים מדהימה מושלם מושלמת יפה יפהפה אוהב אוהבת מהיר מהירה נוח נוחה
ממליץ ממליצה מרוצה מרוצים שווה חזק חזקה איכותי איכותית זול זולה בהיר שקט שקטה נהדר נהדרת"""))
NEGATIVE = frozenset(_words("""bad poor terrible awful horrible slow broken broke died dead hate hated worst
disappointing disappointed expensive overpriced cheap-feeling flimsy noisy loud hot overheats overheating
heats dim blurry late delayed damaged faulty defective useless laggy lags crashes crashed weak short
problem problems issue issues fails failed failure annoying uncomfortable refund return returned scratched
רע רעה גרוע גרועה נורא נוראי איטי איטית שבור שבורה מת מתה יקר יקרה מאוכזב מאוכזבת אכזבה מתחמם מתחממת
חם רועש רועשת מעצבן מעצבנת בעיה בעיות תקלה תקלות פגום פגומה נשבר נשברה התקלקל התקלקלה איחור מאחר חלש חלשה
גרועים"""))
NEGATORS = frozenset({"not", "no", "never", "hardly", "isn't", "wasn't", "don't", "doesn't", "didn't",
                      "aren't", "won't", "can't", "cannot", "nothing", "without",
                      "לא", "אין", "בלי", "אינו", "אינה", "לעולם"})
ASPECTS: dict[str, tuple[str, ...]] = {
    "battery": ("battery", "batteries", "charge", "charging", "charger", "סוללה", "הסוללה", "טעינה", "מטען"),
    "screen": ("screen", "display", "מסך", "תצוגה"),
    "price": ("price", "cost", "expensive", "cheap", "value", "money", "overpriced", "affordable", "מחיר",
              "יקר", "זול", "כסף"),
    "delivery": ("delivery", "shipping", "shipped", "arrived", "courier", "package", "משלוח", "הגיע",
                 "הגיעה", "שליח", "אריזה"),
    "quality": ("quality", "build", "material", "materials", "sturdy", "flimsy", "broke", "broken",
                "איכות", "חומרים", "שבור"),
    "performance": ("performance", "speed", "lag", "laggy", "ביצועים", "מהירות"),
    "camera": ("camera", "photos", "pictures", "מצלמה", "תמונות"),
    "sound": ("sound", "noise", "noisy", "loud", "quiet", "speaker", "רעש", "רועש", "שקט", "רמקול"),
    "heat": ("heat", "hot", "overheats", "overheating", "heats", "מתחמם", "מתחממת", "חם", "חום"),
    "support": ("support", "service", "customer", "warranty", "שירות", "תמיכה", "אחריות"),
}
WORD = re.compile(r"[\w'-]+", re.UNICODE)
CLAUSE = re.compile(r"[.!?;,\n]+|\s(?:but|however|although|though|yet|whereas)\s|\s(?:אבל|אך|אולם|למרות)\s",
                    re.IGNORECASE)
HEBREW_PREFIXES = "ובלמהשכ"
LABELS = ("positive", "neutral", "negative")


def _lookup(word: str, table: frozenset[str]) -> bool:
    """Is `word`, or `word` without up to two Hebrew one-letter prefixes, in `table`?"""
    for cut in range(min(3, len(word))):
        if cut and word[cut - 1] not in HEBREW_PREFIXES:
            return False
        if word[cut:] in table:
            return True
    return False


def _label(score: float) -> str:
    return "positive" if score > 0.2 else "negative" if score < -0.2 else "neutral"


def _clause_score(words: list[str]) -> tuple[int, int]:
    """(positive hits, negative hits), a negator within the two words before a hit flipping it."""
    positive = negative = 0
    for i, word in enumerate(words):
        polarity = 1 if _lookup(word, POSITIVE) else -1 if _lookup(word, NEGATIVE) else 0
        if polarity and any(w in NEGATORS for w in words[max(0, i - 2) : i]):
            polarity = -polarity
        positive += polarity > 0
        negative += polarity < 0
    return positive, negative


def lexicon_analysis(review: str) -> dict[str, Any]:
    positive = negative = 0
    aspects: dict[str, dict[str, Any]] = {}
    for clause in (c.strip() for c in CLAUSE.split(review)):
        words = [w.lower() for w in WORD.findall(clause)]
        if not words:
            continue
        pos, neg = _clause_score(words)
        positive, negative = positive + pos, negative + neg
        clause_label = "positive" if pos > neg else "negative" if neg > pos else "neutral"
        for aspect, cues in ASPECTS.items():
            if any(_lookup(w, frozenset(cues)) for w in words):
                aspects.setdefault(aspect, {"aspect": aspect, "sentiment": clause_label, "evidence": clause})
    total = positive + negative
    score = round((positive - negative) / total, 3) if total else 0.0
    return {"sentiment": _label(score), "score": score, "aspects": list(aspects.values()),
            "mixed": positive > 0 and negative > 0}


REVIEW_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["sentiment", "score", "aspects"],
    "properties": {"sentiment": {"enum": list(LABELS)}, "score": {"type": "number", "minimum": -1, "maximum": 1},
                   "aspects": {"type": "array", "items": {"type": "object", "required": ["aspect", "sentiment"],
                               "properties": {"aspect": {"type": "string"}, "sentiment": {"enum": list(LABELS)},
                                              "evidence": {"type": "string"}}}}}}
SYSTEM_PROMPT = ("Analyse the sentiment of a product review. Reply with one JSON object only: {\"sentiment\": "
                 "\"positive\"|\"neutral\"|\"negative\", \"score\": number from -1 to 1, \"aspects\": [{\"aspect\": "
                 "one English word such as battery, screen, price, delivery, quality, performance, camera, sound, "
                 "heat, support, \"sentiment\": ..., \"evidence\": the words of the review}]}. The review may be in "
                 "Hebrew; keep evidence in the review's language.")


def _parsed(text: str) -> dict[str, Any] | None:
    """The model's JSON if it has the required shape, else None (the lexicon answers instead)."""
    start, end = text.find("{"), text.rfind("}")
    try:
        value = json.loads(text[start : end + 1]) if start >= 0 else None
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("sentiment") not in LABELS:
        return None
    score, aspects = value.get("score"), value.get("aspects", [])
    if not isinstance(score, int | float) or not isinstance(aspects, list):
        return None
    kept = [a for a in aspects if isinstance(a, dict) and isinstance(a.get("aspect"), str)
            and a.get("sentiment") in LABELS]
    return {"sentiment": value["sentiment"], "score": max(-1.0, min(1.0, float(score))), "aspects": kept}


def _llm_analysis(review: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    model = chat_model()
    if model is None:
        return None, {"method": "lexicon"}
    from agentlog.llm.base import LLMUnavailable

    try:
        completion = model.complete([{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": review}],
                                    json_schema=REVIEW_SCHEMA, temperature=0.0, max_tokens=400)
    except LLMUnavailable as error:
        log.warning("analyzeReview falls back to the lexicon: %s", error)
        return None, {"method": "lexicon", "note": f"language model unavailable ({error})"}
    parsed = _parsed(completion.text)
    if parsed is None:
        return None, {"method": "lexicon", "note": "the language model's reply was not the expected JSON"}
    return parsed, {"method": "llm", "llm": completion.audit()}


@tool("analyzeReview", "Sentiment of a product review (positive/neutral/negative, score -1..1) and the "
      "sentiment of each aspect it mentions (battery, screen, price, delivery, quality, ...). English or Hebrew.")
def analyze_review(review_text: str) -> ToolOutput:
    result, meta = _llm_analysis(review_text)
    if result is None:
        result = lexicon_analysis(review_text)
    aspects = "; ".join(f"{a['aspect']} {a['sentiment']}" for a in result["aspects"]) or "no specific aspects"
    mixed = " (mixed)" if result.get("mixed") else ""
    text = f"Sentiment: {result['sentiment']}{mixed} (score {result['score']:+.2f}); aspects: {aspects} [{meta['method']}]"
    value = {"sentiment": result["sentiment"], "score": result["score"], "aspects": result["aspects"]}
    return ToolOutput(value=value, text=text, data={**meta, "review": review_text, **result})
