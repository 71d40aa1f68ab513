"""The offline synthesizer: a template composer that writes the final answer from tool results.

Input is the payload of `SynthesizeFinalAnswerRequested` (userInput, language, outcome, failureReason,
steps with status/output/error). The answer is in the question's language (English or Hebrew), has one
line per step in plan order, leads with the result of a final dependent calculation, names every
failed step with its tool and error, and never invents a value for a step that did not succeed.
Pure and deterministic: the same request always gives the same text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from agentlog.events.plan import PLACEHOLDER, referenced_steps, value_text
from agentlog.services.router.memory import RECALL_TOOL

_HEBREW_LETTER = re.compile(r"[\u05d0-\u05ea]")

PHRASES: dict[str, dict[str, str]] = {
    "en": {
        "math": "{expression} = {result}.",
        "math_single": "{expression} = {result}.",
        "math_final": "Result: {expression} = {result}.",
        "fx": "1 {base} = {rate} {quote}{details}.",
        "fx_source": "source: {source}",
        "fx_as_of": "as of {as_of}",
        "passages_many": "Found {count} passages{about}.",
        "passages_one": "Found 1 passage{about}.",
        "passages_none": "No passages were found{about}.",
        "about": " about {query}",
        "about_default": " of product information",
        "no_output": "Step {step} ({tool}) finished without a result.",
        "fail_weather": "I could not get the weather{city} (step {step}, {tool}): {message}.",
        "city": " for {city}",
        "fail_fx": "I could not get the {base} to {quote} exchange rate (step {step}, {tool}): {message}.",
        "fail_fx_any": "I could not get the exchange rate (step {step}, {tool}): {message}.",
        "fail_math": "I could not calculate {expression} (step {step}, {tool}): {message}.",
        "fail_math_any": "I could not do the calculation (step {step}, {tool}): {message}.",
        "fail_product": "I could not look up product information{about} (step {step}, {tool}): {message}.",
        "fail_other": "Step {step} ({tool}) failed: {message}.",
        "unknown_error": "unknown error",
        "skipped": "Step {step} ({tool}) was not run because {cause}.",
        "cause_one": "step {root} failed",
        "cause_many": "steps {roots} failed",
        "cause_unknown": "an earlier step failed",
        "and": " and ",
        "all_failed": "I could not answer your question.",
        "unfinished": "I could not finish answering your question: {reason}.",
        "plan_failed": "I could not plan an answer to your question: {reason}.",
        "plan_failed_bare": "I could not plan an answer to your question.",
        "not_approved": "I did not run step {step} ({tool}): {message}.",
        "turn_cancelled": "I stopped working on this request: {message}.",
        "abandoned": "Step {step} ({tool}) was not finished.",
        "no_steps": "I have no tool results to answer your question with.",
        "recall_none": "You have not asked me anything earlier in this conversation.",
        "recall_last": 'Your previous question was: "{question}". My answer was: {answer}.',
        "recall_earlier": "Before that you asked, oldest first: {questions}.",
    },
    "he": {
        "math": "{expression} = {result}.",
        "math_single": "התוצאה: {expression} = {result}.",
        "math_final": "התוצאה: {expression} = {result}.",
        "fx": "שער החליפין: 1 {base} = {rate} {quote}{details}.",
        "fx_source": "מקור: {source}",
        "fx_as_of": "נכון ל-{as_of}",
        "passages_many": "נמצאו {count} קטעים{about}.",
        "passages_one": "נמצא קטע אחד{about}.",
        "passages_none": "לא נמצאו קטעים{about}.",
        "about": " על {query}",
        "about_default": " של מידע על מוצרים",
        "no_output": "שלב {step} ({tool}) הסתיים ללא תוצאה.",
        "fail_weather": "לא הצלחתי לקבל את מזג האוויר{city} (שלב {step}, {tool}): {message}.",
        "city": " עבור {city}",
        "fail_fx": "לא הצלחתי לקבל את שער החליפין של {base} ל-{quote} (שלב {step}, {tool}): {message}.",
        "fail_fx_any": "לא הצלחתי לקבל את שער החליפין (שלב {step}, {tool}): {message}.",
        "fail_math": "לא הצלחתי לחשב את {expression} (שלב {step}, {tool}): {message}.",
        "fail_math_any": "לא הצלחתי לבצע את החישוב (שלב {step}, {tool}): {message}.",
        "fail_product": "לא הצלחתי למצוא מידע על מוצרים{about} (שלב {step}, {tool}): {message}.",
        "fail_other": "שלב {step} ({tool}) נכשל: {message}.",
        "unknown_error": "שגיאה לא ידועה",
        "skipped": "שלב {step} ({tool}) לא הורץ כי {cause}.",
        "cause_one": "שלב {root} נכשל",
        "cause_many": "השלבים {roots} נכשלו",
        "cause_unknown": "שלב קודם נכשל",
        "and": " ו-",
        "all_failed": "לא הצלחתי לענות על השאלה שלך.",
        "unfinished": "לא הצלחתי להשלים את התשובה לשאלה שלך: {reason}.",
        "plan_failed": "לא הצלחתי לתכנן תשובה לשאלה שלך: {reason}.",
        "plan_failed_bare": "לא הצלחתי לתכנן תשובה לשאלה שלך.",
        "not_approved": "לא הרצתי את שלב {step} ({tool}) כי הוא לא אושר: {message}.",
        "turn_cancelled": "הפסקתי לעבוד על הבקשה כי היא בוטלה: {message}.",
        "abandoned": "שלב {step} ({tool}) לא הושלם.",
        "no_steps": "אין לי תוצאות של כלים שאפשר לענות בעזרתן על השאלה שלך.",
        "recall_none": "לא שאלת אותי שום דבר קודם בשיחה הזאת.",
        "recall_last": 'השאלה הקודמת שלך הייתה: "{question}". התשובה שלי הייתה: {answer}.',
        "recall_earlier": "לפני כן שאלת, מהראשונה: {questions}.",
    },
}

TEXT_TOOLS = frozenset({"getWeather", "ragGeneration", "analyzeReview", "generalChat"})


class Synthesizer(Protocol):
    """Writes the final answer for a `SynthesizeFinalAnswerRequested` payload."""

    name: str

    def synthesize(self, request: Mapping[str, Any]) -> str: ...


class TemplateSynthesizer:
    """The offline synthesizer: fixed English/Hebrew templates, no model, no I/O."""

    name = "offline-template"

    def synthesize(self, request: Mapping[str, Any]) -> str:
        return compose_answer(request)


def _language(request: Mapping[str, Any]) -> str:
    language = request.get("language")
    if language in PHRASES:
        return str(language)
    return "he" if _HEBREW_LETTER.search(str(request.get("userInput") or "")) else "en"


def _clean(text: Any) -> str:
    """A fragment to put before a template's own full stop: trimmed, without a trailing period."""
    return str(text).strip().rstrip(".").strip()


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _arg(step: Mapping[str, Any], key: str) -> str | None:
    value = _mapping(step.get("arguments")).get(key)
    return _clean(value) if isinstance(value, str | int | float) and _clean(value) else None


def _dependencies(step: Mapping[str, Any]) -> list[str]:
    declared = step.get("dependsOn")
    if isinstance(declared, list | tuple):
        return [str(d) for d in declared]
    return sorted(referenced_steps(_mapping(step.get("arguments"))))


class _Composer:
    def __init__(self, steps: Sequence[Mapping[str, Any]], language: str) -> None:
        self.steps = steps
        self.p = PHRASES[language]
        self.by_id = {str(s.get("stepId")): s for s in steps}

    def _value(self, step_id: str) -> Any:
        step = self.by_id.get(step_id)
        if step is None or step.get("status") != "succeeded":
            return None
        return _mapping(step.get("output")).get("value")

    def expression(self, step: Mapping[str, Any]) -> str | None:
        """The calculated expression with `{{sN}}` placeholders replaced by the earlier results."""
        given = _mapping(step.get("output")).get("data")
        if isinstance(_mapping(given).get("expression"), str):
            return _clean(_mapping(given)["expression"])
        raw = _arg(step, "expression")
        if raw is None:
            return None

        def fill(match: re.Match[str]) -> str:
            value = self._value(match.group(1))
            return match.group(0) if value is None else value_text(value)

        return PLACEHOLDER.sub(fill, raw)

    def success(self, step: Mapping[str, Any], key: str = "math") -> str:
        tool, step_id = str(step.get("tool")), str(step.get("stepId"))
        output = step.get("output")
        if not isinstance(output, Mapping):
            return self.p["no_output"].format(step=step_id, tool=tool)
        text = str(output.get("text") or "").strip()
        value, data = output.get("value"), _mapping(output.get("data"))
        if tool == "calculateMath":
            expression = self.expression(step)
            result = value_text(value) if value is not None else _clean(text)
            if expression and result:
                return self.p[key].format(expression=expression, result=result)
        elif tool == "getExchangeRate":
            base, quote = _arg(step, "from"), _arg(step, "to")
            if base and quote and isinstance(value, int | float) and not isinstance(value, bool):
                details = []
                if data.get("source"):
                    details.append(self.p["fx_source"].format(source=_clean(data["source"])))
                if data.get("asOf"):
                    details.append(self.p["fx_as_of"].format(as_of=_clean(data["asOf"])))
                extra = f" ({', '.join(details)})" if details else ""
                return self.p["fx"].format(base=base, quote=quote, rate=value_text(value), details=extra)
        elif tool == "getProductInformation":
            passages = data.get("passages", data.get("chunks", value))
            if isinstance(passages, list):
                query = _arg(step, "query")
                about = self.p["about"].format(query=query) if query else self.p["about_default"]
                count = len(passages)
                form = "passages_none" if count == 0 else "passages_one" if count == 1 else "passages_many"
                return self.p[form].format(count=count, about=about)
        elif tool == RECALL_TOOL:
            return recall_text(_mapping(step.get("arguments")).get("turns"), self.p)
        elif tool not in TEXT_TOOLS and text:
            return f"{tool}: {text}"
        if text:
            return text
        return self.p["no_output"].format(step=step_id, tool=tool)

    def failure(self, step: Mapping[str, Any]) -> str:
        tool, step_id = str(step.get("tool")), str(step.get("stepId"))
        message = _clean(_mapping(step.get("error")).get("message") or "") or self.p["unknown_error"]
        fields = {"step": step_id, "tool": tool, "message": message}
        control = _control_phrase(step)
        if control is not None:
            return self.p[control].format(**fields)
        if tool == "getWeather":
            city = _arg(step, "city")
            where = self.p["city"].format(city=city) if city else ""
            return self.p["fail_weather"].format(city=where, **fields)
        if tool == "getExchangeRate":
            base, quote = _arg(step, "from"), _arg(step, "to")
            if base and quote:
                return self.p["fail_fx"].format(base=base, quote=quote, **fields)
            return self.p["fail_fx_any"].format(**fields)
        if tool == "calculateMath":
            expression = self.expression(step)
            if expression:
                return self.p["fail_math"].format(expression=expression, **fields)
            return self.p["fail_math_any"].format(**fields)
        if tool == "getProductInformation":
            query = _arg(step, "query")
            return self.p["fail_product"].format(about=self.p["about"].format(query=query) if query else "",
                                                 **fields)
        return self.p["fail_other"].format(**fields)

    def failed_roots(self, step: Mapping[str, Any]) -> list[str]:
        """The failed steps that a skipped step was waiting for, directly or through skipped steps."""
        roots: list[str] = []
        pending = list(_dependencies(step))
        seen: set[str] = set()
        while pending:
            dep = pending.pop(0)
            if dep in seen or dep not in self.by_id:
                continue
            seen.add(dep)
            status = self.by_id[dep].get("status")
            if status == "failed":
                roots.append(dep)
            elif status != "succeeded":
                pending.extend(_dependencies(self.by_id[dep]))
        order = list(self.by_id)
        return sorted(roots, key=order.index)

    def skipped(self, step: Mapping[str, Any]) -> str:
        roots = self.failed_roots(step)
        if not roots:
            cause = self.p["cause_unknown"]
        elif len(roots) == 1:
            cause = self.p["cause_one"].format(root=roots[0])
        else:
            cause = self.p["cause_many"].format(roots=", ".join(roots[:-1]) + self.p["and"] + roots[-1])
        return self.p["skipped"].format(step=str(step.get("stepId")), tool=str(step.get("tool")), cause=cause)

    def final_calculation(self) -> Mapping[str, Any] | None:
        """The last successful calculation that used earlier results and that no later step uses."""
        used: set[str] = set()
        for step in list(self.steps)[::-1]:
            if (step.get("tool") == "calculateMath" and step.get("status") == "succeeded"
                    and str(step.get("stepId")) not in used
                    and any(d in self.by_id for d in _dependencies(step))):
                return step
            used.update(_dependencies(step))
        return None

    def lines(self) -> list[str]:
        final = self.final_calculation()
        lines = [self.success(final, "math_final")] if final is not None else []
        single = len(self.steps) == 1
        for step in self.steps:
            if step is final:
                continue
            status = step.get("status")
            if status == "succeeded":
                lines.append(self.success(step, "math_single" if single else "math"))
            elif status == "failed":
                lines.append(self.failure(step))
            else:
                lines.append(self.skipped(step))
        return lines


def _control_phrase(step: Mapping[str, Any]) -> str | None:
    """The phrase for a step a person stopped: not approved (denied or expired) or cancelled."""
    kind = _mapping(step.get("error")).get("type")
    return "not_approved" if kind in ("ApprovalDenied", "ApprovalExpired") else \
        "abandoned" if kind == "TurnCancelled" else None


def cancellation(steps: Sequence[Mapping[str, Any]]) -> str | None:
    """Who cancelled the turn and why, from its abandoned steps' error (None if it was not cancelled)."""
    for step in steps:
        error = _mapping(step.get("error"))
        if error.get("type") == "TurnCancelled":
            return _clean(error.get("message") or "") or None
    return None


def compose_answer(request: Mapping[str, Any]) -> str:
    """Write the final answer for a `SynthesizeFinalAnswerRequested` payload (pure, deterministic)."""
    language = _language(request)
    phrases = PHRASES[language]
    raw_steps = request.get("steps")
    steps = [s for s in raw_steps if isinstance(s, Mapping)] if isinstance(raw_steps, list) else []
    reason = _clean(request.get("failureReason") or "")
    failed_outcome = request.get("outcome") == "failed"
    if not steps:
        if failed_outcome:
            return phrases["plan_failed"].format(reason=reason) if reason else phrases["plan_failed_bare"]
        return phrases["no_steps"]
    lines = _Composer(steps, language).lines()
    cancelled = cancellation(steps)
    if cancelled is not None:
        lines.insert(0, phrases["turn_cancelled"].format(message=cancelled))
    elif not any(s.get("status") == "succeeded" for s in steps):
        lines.insert(0, phrases["all_failed"])
    if failed_outcome and reason and not any(s.get("status") == "failed" for s in steps):
        lines.append(phrases["unfinished"].format(reason=reason))
    return "\n".join(lines)


def recall_text(turns: Any, phrases: Mapping[str, str]) -> str:
    """The answer to "what did I ask before?" from the remembered turns (oldest first) that the router
    recorded in the plan: the previous question and its answer, then the earlier questions."""
    remembered = [t for t in turns if isinstance(t, Mapping)] if isinstance(turns, list) else []
    if not remembered:
        return phrases["recall_none"]

    def flat(value: Any) -> str:
        return " ".join(str(value or "").split())

    last = remembered[-1]
    lines = [phrases["recall_last"].format(question=flat(last.get("question")), answer=_clean(flat(last.get("answer"))))]
    if len(remembered) > 1:
        questions = "; ".join(f'"{flat(t.get("question"))}"' for t in remembered[:-1])
        lines.append(phrases["recall_earlier"].format(questions=questions))
    return "\n".join(lines)
