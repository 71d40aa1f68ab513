"""The offline template synthesizer: phrasing per tool, failures, skipped steps, Hebrew, determinism."""

from __future__ import annotations

from typing import Any

from agentlog.services.synthesis.compose import TemplateSynthesizer, compose_answer


def step(step_id: str, tool: str, arguments: dict[str, Any], *, status: str = "succeeded",
         value: Any = None, text: str = "", data: dict[str, Any] | None = None,
         error: str | None = None, error_type: str = "ToolError") -> dict[str, Any]:
    output = {"value": value, "text": text, "data": data or {}} if status == "succeeded" else None
    err = {"type": error_type, "message": error, "retryable": False} if status == "failed" else None
    return {"stepId": step_id, "tool": tool, "arguments": arguments, "status": status,
            "output": output, "error": err}


def request(steps: list[dict[str, Any]], *, language: str = "en", outcome: str = "completed",
            reason: str | None = None, user_input: str = "question") -> dict[str, Any]:
    return {"userInput": user_input, "language": language, "outcome": outcome,
            "failureReason": reason, "steps": steps}


MATH = step("s1", "calculateMath", {"expression": "12.5% of 240"}, value=30, text="30")
FX = step("s1", "getExchangeRate", {"from": "USD", "to": "ILS"}, value=3.7, text="1 USD = 3.7 ILS",
          data={"source": "Bank of Israel", "asOf": "2024-05-01"})
WEATHER_FAILED = step("s1", "getWeather", {"city": "Haifa"}, status="failed",
                      error="no weather provider is configured (set WEATHER_API_KEY)")
BUDGET = step("s2", "calculateMath", {"expression": "500 - 2 * 40 * {{s1}}"}, value=204, text="204")
BUDGET["dependsOn"] = ["s1"]


def test_single_math() -> None:
    assert compose_answer(request([MATH])) == "12.5% of 240 = 30."


def test_single_math_hebrew() -> None:
    assert compose_answer(request([MATH], language="he")) == "התוצאה: 12.5% of 240 = 30."


def test_float_values_read_plainly() -> None:
    calc = step("s1", "calculateMath", {"expression": "1 / 4"}, value=0.25, text="0.25")
    big = step("s1", "calculateMath", {"expression": "1e20 * 1"}, value=1e20, text="1e20")
    assert compose_answer(request([calc])) == "1 / 4 = 0.25."
    assert compose_answer(request([big])) == "1e20 * 1 = 100000000000000000000."


def test_several_independent_steps_in_plan_order() -> None:
    weather = step("s1", "getWeather", {"city": "Eilat"}, value=31, text="Eilat: 31°C, clear sky")
    fx = {**FX, "stepId": "s2"}
    calc = step("s3", "calculateMath", {"expression": "120 * 3.7"}, value=444, text="444")
    assert compose_answer(request([weather, fx, calc])).split("\n") == [
        "Eilat: 31°C, clear sky",
        "1 USD = 3.7 ILS (source: Bank of Israel, as of 2024-05-01).",
        "120 * 3.7 = 444.",
    ]


def test_exchange_rate_without_source() -> None:
    fx = step("s1", "getExchangeRate", {"from": "EUR", "to": "ILS"}, value=4.05, text="1 EUR = 4.05 ILS")
    assert compose_answer(request([fx])) == "1 EUR = 4.05 ILS."
    assert compose_answer(request([fx], language="he")) == "שער החליפין: 1 EUR = 4.05 ILS."


def test_dependent_calculation_leads_with_the_result() -> None:
    answer = compose_answer(request([FX, BUDGET]))
    assert answer.split("\n") == [
        "Result: 500 - 2 * 40 * 3.7 = 204.",
        "1 USD = 3.7 ILS (source: Bank of Israel, as of 2024-05-01).",
    ]


def test_dependency_found_through_placeholder_without_depends_on() -> None:
    budget = {k: v for k, v in BUDGET.items() if k != "dependsOn"}
    assert compose_answer(request([FX, budget])).startswith("Result: 500 - 2 * 40 * 3.7 = 204.")


def test_dependent_calculation_leads_even_when_not_the_last_step() -> None:
    info = step("s3", "getProductInformation", {"query": "PrintForge Mini"}, value=["a", "b"], text="2")
    rag = {**step("s4", "ragGeneration", {}, value="x", text="PLA, PETG"), "dependsOn": ["s3"]}
    assert compose_answer(request([FX, BUDGET, info, rag])).split("\n") == [
        "Result: 500 - 2 * 40 * 3.7 = 204.",
        "1 USD = 3.7 ILS (source: Bank of Israel, as of 2024-05-01).",
        "Found 2 passages about PrintForge Mini.",
        "PLA, PETG",
    ]


def test_calculation_used_by_a_later_step_is_not_the_lead() -> None:
    later = {**step("s3", "calculateMath", {"expression": "{{s2}} / 2"}, value=102, text="102"),
             "dependsOn": ["s2"]}
    assert compose_answer(request([FX, BUDGET, later])).split("\n")[0] == "Result: 204 / 2 = 102."


def test_dependent_calculation_hebrew() -> None:
    answer = compose_answer(request([FX, BUDGET], language="he"))
    assert answer.split("\n") == [
        "התוצאה: 500 - 2 * 40 * 3.7 = 204.",
        "שער החליפין: 1 USD = 3.7 ILS (מקור: Bank of Israel, נכון ל-2024-05-01).",
    ]


def test_product_information_counts_passages_and_rag_text_as_is() -> None:
    info = step("s1", "getProductInformation", {"query": "PrintForge Mini"}, value=["a", "b", "c"],
                text="3 passages", data={"passages": [{"text": "a"}, {"text": "b"}, {"text": "c"}]})
    rag = step("s2", "ragGeneration", {"context": {"$ref": "s1"}}, value="x", text="It prints PLA and PETG")
    assert compose_answer(request([info, rag])).split("\n") == [
        "Found 3 passages about PrintForge Mini.", "It prints PLA and PETG"]
    assert compose_answer(request([info, rag], language="he")).split("\n") == [
        "נמצאו 3 קטעים על PrintForge Mini.", "It prints PLA and PETG"]


def test_product_information_one_and_none() -> None:
    one = step("s1", "getProductInformation", {"query": "EvoPhone X"}, value=["a"], text="1")
    none = step("s1", "getProductInformation", {"query": "EvoPhone X"}, value=[], text="0",
                data={"passages": []})
    assert compose_answer(request([one])) == "Found 1 passage about EvoPhone X."
    assert compose_answer(request([none])) == "No passages were found about EvoPhone X."


def test_text_tools_are_inserted_as_they_are() -> None:
    review = step("s1", "analyzeReview", {"review": "r"}, value="negative", text="סנטימנט: שלילי")
    chat = step("s2", "generalChat", {"message": "joke"}, value="j", text="A SQL query walks into a bar")
    assert compose_answer(request([review, chat], language="he")) == (
        "סנטימנט: שלילי\nA SQL query walks into a bar")


def test_unknown_tool() -> None:
    other = step("s1", "translateText", {"text": "hi"}, value="shalom", text="shalom")
    assert compose_answer(request([other])) == "translateText: shalom"


def test_failed_weather_names_step_tool_and_error_and_leads_with_all_failed() -> None:
    answer = compose_answer(request([WEATHER_FAILED], outcome="failed",
                                    reason="step s1 (getWeather) failed"))
    assert answer.split("\n") == [
        "I could not answer your question.",
        "I could not get the weather for Haifa (step s1, getWeather): "
        "no weather provider is configured (set WEATHER_API_KEY).",
    ]


def test_failure_forms_per_tool() -> None:
    math = step("s1", "calculateMath", {"expression": "1 / 0"}, status="failed", error="division by zero.",
                error_type="MathError")
    fx = step("s1", "getExchangeRate", {"from": "USD", "to": "XYZ"}, status="failed",
              error="unknown currency XYZ")
    info = step("s1", "getProductInformation", {"query": "Voltrider E2"}, status="failed",
                error="index missing")
    rag = step("s1", "ragGeneration", {}, status="failed", error="")
    assert compose_answer(request([math])).endswith(
        "I could not calculate 1 / 0 (step s1, calculateMath): division by zero.")
    assert compose_answer(request([fx])).endswith(
        "I could not get the USD to XYZ exchange rate (step s1, getExchangeRate): unknown currency XYZ.")
    assert compose_answer(request([info])).endswith(
        "I could not look up product information about Voltrider E2 (step s1, getProductInformation): "
        "index missing.")
    assert compose_answer(request([rag])).endswith("Step s1 (ragGeneration) failed: unknown error.")


def test_partial_failure_keeps_successes_and_invents_nothing() -> None:
    fx = {**FX, "stepId": "s2"}
    answer = compose_answer(request([WEATHER_FAILED, fx], outcome="failed"))
    assert answer.split("\n") == [
        "I could not get the weather for Haifa (step s1, getWeather): "
        "no weather provider is configured (set WEATHER_API_KEY).",
        "1 USD = 3.7 ILS (source: Bank of Israel, as of 2024-05-01).",
    ]


def test_skipped_step_after_failed_dependency() -> None:
    fx = step("s1", "getExchangeRate", {"from": "USD", "to": "ILS"}, status="failed",
              error="timed out after 3 attempts")
    budget = step("s2", "calculateMath", {"expression": "500 - 2 * 40 * {{s1}}"}, status="skipped")
    answer = compose_answer(request([fx, budget], outcome="failed"))
    assert answer.split("\n") == [
        "I could not answer your question.",
        "I could not get the USD to ILS exchange rate (step s1, getExchangeRate): "
        "timed out after 3 attempts.",
        "Step s2 (calculateMath) was not run because step s1 failed.",
    ]
    assert "{{s1}}" not in answer.split("\n")[2]


def test_skipped_through_a_chain_and_several_roots() -> None:
    a = step("s1", "getExchangeRate", {"from": "USD", "to": "ILS"}, status="failed", error="down")
    b = step("s2", "getExchangeRate", {"from": "EUR", "to": "ILS"}, status="failed", error="down")
    c = step("s3", "calculateMath", {"expression": "{{s1}} + {{s2}}"}, status="skipped")
    d = {**step("s4", "generalChat", {}, status="skipped"), "dependsOn": ["s3"]}
    lines = compose_answer(request([a, b, c, d], outcome="failed")).split("\n")
    assert lines[3] == "Step s3 (calculateMath) was not run because steps s1 and s2 failed."
    assert lines[4] == "Step s4 (generalChat) was not run because steps s1 and s2 failed."
    he = compose_answer(request([a, b, c, d], language="he", outcome="failed")).split("\n")
    assert he[3] == "שלב s3 (calculateMath) לא הורץ כי השלבים s1 ו-s2 נכשלו."


def test_skipped_without_known_cause() -> None:
    lone = step("s1", "getWeather", {"city": "Eilat"}, status="skipped")
    assert compose_answer(request([lone])).endswith(
        "Step s1 (getWeather) was not run because an earlier step failed.")


def test_planner_failure() -> None:
    assert compose_answer(request([], outcome="failed", reason="planner failed: no JSON object")) == (
        "I could not plan an answer to your question: planner failed: no JSON object.")
    assert compose_answer(request([], language="he", outcome="failed", reason="planner failed: x")) == (
        "לא הצלחתי לתכנן תשובה לשאלה שלך: planner failed: x.")
    assert compose_answer(request([], outcome="failed")) == "I could not plan an answer to your question."


def test_completed_without_steps() -> None:
    assert compose_answer(request([])) == "I have no tool results to answer your question with."


def test_failed_outcome_without_failed_step_reports_the_reason() -> None:
    answer = compose_answer(request([MATH], outcome="failed", reason="turn cancelled"))
    assert answer.split("\n") == [
        "12.5% of 240 = 30.", "I could not finish answering your question: turn cancelled."]


def test_hebrew_failures() -> None:
    weather = {**WEATHER_FAILED, "arguments": {"city": "חיפה"}}
    answer = compose_answer(request([weather], language="he", outcome="failed"))
    assert answer.split("\n") == [
        "לא הצלחתי לענות על השאלה שלך.",
        "לא הצלחתי לקבל את מזג האוויר עבור חיפה (שלב s1, getWeather): "
        "no weather provider is configured (set WEATHER_API_KEY).",
    ]


def test_language_falls_back_to_the_question_text() -> None:
    req = request([MATH], language="", user_input="כמה זה 12.5% מ-240?")
    assert compose_answer(req).startswith("התוצאה:")


def test_deterministic_and_pure() -> None:
    req = request([FX, BUDGET, WEATHER_FAILED | {"stepId": "s3"}], outcome="failed")
    snapshot = repr(req)
    first = compose_answer(req)
    assert all(compose_answer(req) == first for _ in range(5))
    assert repr(req) == snapshot


def test_template_synthesizer_delegates() -> None:
    synthesizer = TemplateSynthesizer()
    assert synthesizer.name == "offline-template"
    assert synthesizer.synthesize(request([MATH])) == compose_answer(request([MATH]))
