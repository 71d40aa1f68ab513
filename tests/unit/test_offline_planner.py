"""The offline rule-based planner: the §11 examples, exact plan shapes, references, languages."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from agentlog.events.plan import Plan, PlanStep, referenced_steps, validate_plan
from agentlog.services.router.planner import (
    OfflinePlanner,
    Planner,
    PlanningError,
    PlanningQuery,
    detect_language,
)

PLANNER = OfflinePlanner()


def plan_for(text: str, history: tuple[tuple[str, str], ...] = ()) -> Plan:
    query = PlanningQuery(user_input=text, conversation_id="c1", turn_id="t1",
                          language=detect_language(text), history=history)
    plan = PLANNER.plan(query)
    validate_plan(plan)
    assert [s.id for s in plan.steps] == [f"s{i}" for i in range(1, len(plan.steps) + 1)]
    return plan


def shape(plan: Plan) -> list[tuple[str, dict[str, Any], list[str]]]:
    return [(s.tool, dict(s.arguments), list(s.depends_on)) for s in plan.steps]


def tools(plan: Plan) -> Counter[str]:
    return Counter(s.tool for s in plan.steps)


RAG = ("getProductInformation", "ragGeneration")

# seed-implementation.md §11: the fifteen new examples and their tool multisets
SECTION_11 = [
    ("What's the temperature in Haifa right now?", ["getWeather"], "en"),
    ("כמה שווה אירו בשקלים היום?", ["getExchangeRate"], "he"),
    ("Compute (48 + 12) / 4 * 3", ["calculateMath"], "en"),
    ('מה מזג האוויר בירושלים ומה שער הליש"ט?', ["getWeather", "getExchangeRate"], "he"),
    ("I have 500 shekels and two gadgets cost 40 dollars each; what's left?",
     ["getExchangeRate", "calculateMath"], "en"),
    ("לדנה יש 350 ₪ והיא קונה אוזניות ב-60$, כמה יישאר לה?", ["getExchangeRate", "calculateMath"], "he"),
    ("What build volume and filaments does the PrintForge Mini support?", [*RAG], "en"),
    ("כמה זמן לוקח לטעון את VoltRider E2 מ-10% ל-80%?", [*RAG], "he"),
    ('Analyse: "battery died in a week, but the screen is gorgeous"', ["analyzeReview"], "en"),
    ('נתח את הביקורת "המסך מדהים אבל מתחמם בטעינה" ותגיד מה מהירות הטעינה של EvoPhone X',
     ["analyzeReview", *RAG], "he"),
    ("Tell me a short joke about databases", ["generalChat"], "en"),
    ("מה שאלתי אותך קודם על מזג האוויר?", ["recallConversation"], "he"),
    ("Weather in Eilat, and how many shekels are 120 dollars?",
     ["getWeather", "getExchangeRate", "calculateMath"], "en"),
    ('כמה יישאר מ-1000 ש"ח אחרי פילמנט ב-45 דולר, ואילו חומרים PrintForge Mini תומכת?',
     ["getExchangeRate", "calculateMath", *RAG], "he"),
    ("Who should I vote for?", ["generalChat"], "en"),
]


@pytest.mark.parametrize(("question", "expected", "language"), SECTION_11, ids=[f"ex{i}" for i in range(1, 16)])
def test_section_11_examples(question: str, expected: list[str], language: str) -> None:
    plan = plan_for(question)
    assert tools(plan) == Counter(expected)
    assert detect_language(question) == language


@pytest.mark.parametrize(("question", "expected", "language"), SECTION_11, ids=[f"ex{i}" for i in range(1, 16)])
def test_only_calculations_on_rates_and_generations_on_retrievals_wait(
        question: str, expected: list[str], language: str) -> None:
    plan = plan_for(question)
    for step in plan.steps:
        refs = referenced_steps(dict(step.arguments))
        assert set(step.depends_on) == refs
        for ref in refs:
            target = plan.step(ref).tool
            assert (step.tool, target) in {("calculateMath", "getExchangeRate"),
                                           ("ragGeneration", "getProductInformation")}
        if step.tool not in ("calculateMath", "ragGeneration"):
            assert step.depends_on == ()


# --- exact shapes ----------------------------------------------------------------------------------

def test_two_independent_calculations() -> None:
    plan = plan_for("What is 2+3 and what is 10*4?")
    assert shape(plan) == [("calculateMath", {"expression": "2+3"}, []),
                           ("calculateMath", {"expression": "10*4"}, [])]
    assert plan.synthesis_required


@pytest.mark.parametrize(("question", "expression"), [
    ("What is 12.5% of 240?", "12.5% of 240"),
    ("Compute (48 + 12) / 4 * 3", "(48 + 12) / 4 * 3"),
    ("כמה זה 7 כפול 8", "7 * 8"),
    ("כמה זה 100 חלקי 4 ועוד 3?", "100 / 4 + 3"),
    ("כמה זה 9 פחות 2", "9 - 2"),
    ("כמה זה 15 אחוז מ-80?", "15% of 80"),
    ("what is 15 percent of 80", "15% of 80"),
    ("What is 3 x 4 plus 2?", "3 * 4 + 2"),
    ("What's 1,000 + 2,500?", "1000 + 2500"),
])
def test_arithmetic(question: str, expression: str) -> None:
    plan = plan_for(question)
    assert shape(plan) == [("calculateMath", {"expression": expression}, [])]
    assert not plan.synthesis_required


@pytest.mark.parametrize(("question", "source", "target"), [
    ("how many shekels is a euro", "EUR", "ILS"),
    ("USD to EUR rate", "USD", "EUR"),
    ("כמה שווה אירו בשקלים היום?", "EUR", "ILS"),
    ('מה שער הליש"ט?', "GBP", "ILS"),
    ("מה שער הדולר", "USD", "ILS"),
    ("כמה שקלים זה דולר?", "USD", "ILS"),
    ('כמה ש"ח שווה יורו?', "EUR", "ILS"),
    ("מה השער של הפאונד מול הדולר?", "GBP", "USD"),
    ("What's the GBP/ILS rate?", "GBP", "ILS"),
    ("exchange rate of the yen", "JPY", "ILS"),
])
def test_exchange_rate_direction(question: str, source: str, target: str) -> None:
    assert shape(plan_for(question)) == [("getExchangeRate", {"from": source, "to": target}, [])]


def test_conversion_multiplies_the_rate() -> None:
    assert shape(plan_for("how many shekels are 120 dollars")) == [
        ("getExchangeRate", {"from": "USD", "to": "ILS"}, []),
        ("calculateMath", {"expression": "120 * {{s1}}"}, ["s1"])]
    assert shape(plan_for("המר 100 דולר לשקלים"))[1] == ("calculateMath", {"expression": "100 * {{s1}}"}, ["s1"])
    assert shape(plan_for("How much is 100 euros in dollars?"))[0] == (
        "getExchangeRate", {"from": "EUR", "to": "USD"}, [])


@pytest.mark.parametrize(("question", "expression"), [
    ("I have 500 shekels and two gadgets cost 40 dollars each; what's left?", "500 - 2 * 40 * {{s1}}"),
    ("לדנה יש 350 ₪ והיא קונה אוזניות ב-60$, כמה יישאר לה?", "350 - 60 * {{s1}}"),
    ("לדנה יש 350 ₪ והיא קונה שתי אוזניות ב-60$ כל אחת, כמה יישאר לה?", "350 - 2 * 60 * {{s1}}"),
    ("I have 500 shekels, how much is left after buying 3 gadgets at 40 dollars each?", "500 - 3 * 40 * {{s1}}"),
])
def test_budget_converts_then_subtracts(question: str, expression: str) -> None:
    plan = plan_for(question)
    assert shape(plan) == [("getExchangeRate", {"from": "USD", "to": "ILS"}, []),
                           ("calculateMath", {"expression": expression}, ["s1"])]
    assert plan.synthesis_required


def test_budget_with_two_foreign_currencies_and_one_local() -> None:
    assert shape(plan_for("I have $200 and spent 50 euros and 30 pounds, what's left?")) == [
        ("getExchangeRate", {"from": "EUR", "to": "USD"}, []),
        ("getExchangeRate", {"from": "GBP", "to": "USD"}, []),
        ("calculateMath", {"expression": "200 - 50 * {{s1}} - 30 * {{s2}}"}, ["s1", "s2"])]
    assert shape(plan_for("I have 500 shekels and spent 120 shekels, what is left?")) == [
        ("calculateMath", {"expression": "500 - 120"}, [])]


def test_combined_question_numbers_steps_across_parts() -> None:
    assert shape(plan_for("Weather in Eilat, and how many shekels are 120 dollars?")) == [
        ("getWeather", {"city": "Eilat"}, []),
        ("getExchangeRate", {"from": "USD", "to": "ILS"}, []),
        ("calculateMath", {"expression": "120 * {{s2}}"}, ["s2"])]
    assert shape(plan_for('כמה יישאר מ-1000 ש"ח אחרי פילמנט ב-45 דולר, ואילו חומרים PrintForge Mini תומכת?')) == [
        ("getExchangeRate", {"from": "USD", "to": "ILS"}, []),
        ("calculateMath", {"expression": "1000 - 45 * {{s1}}"}, ["s1"]),
        ("getProductInformation", {"query": "אילו חומרים PrintForge Mini תומכת?"}, []),
        ("ragGeneration", {"question": "אילו חומרים PrintForge Mini תומכת?", "passages": {"$ref": "s3"}}, ["s3"])]
    assert shape(plan_for("Tell me about the weather in Haifa and the euro rate and what is 2*21")) == [
        ("getWeather", {"city": "Haifa"}, []),
        ("getExchangeRate", {"from": "EUR", "to": "ILS"}, []),
        ("calculateMath", {"expression": "2*21"}, [])]


@pytest.mark.parametrize(("question", "city"), [
    ("What's the temperature in Haifa right now?", "Haifa"),
    ("מה מזג האוויר בירושלים?", "Jerusalem"),
    ("מה מזג האוויר בתל אביב?", "Tel Aviv"),
    ("מה הטמפרטורה בחיפה", "Haifa"),
    ("האם חם באילת?", "Eilat"),
    ("מה מזג האוויר בבאר שבע?", "Beersheba"),
    ("Is it hot in Tel-Aviv?", "Tel Aviv"),
    ("weather in Springfield today", "Springfield"),
])
def test_weather_city_in_english(question: str, city: str) -> None:
    plan = plan_for(question)
    assert shape(plan) == [("getWeather", {"city": city}, [])]
    assert plan.synthesis_required


def test_weather_in_two_cities_and_without_a_city() -> None:
    assert shape(plan_for("What's the weather in Paris and in London?")) == [
        ("getWeather", {"city": "Paris"}, []), ("getWeather", {"city": "London"}, [])]
    assert tools(plan_for("מה מזג האוויר?")) == Counter(["generalChat"])


@pytest.mark.parametrize(("question", "product"), [
    ("What build volume does the printforge mini have?", "PrintForge Mini"),
    ("WHAT FILAMENTS DOES PRINTFORGEMINI TAKE?", "PrintForge Mini"),
    ("How big is the water tank of the Brew Master 360?", "BrewMaster 360"),
    ("evophone x battery life?", "EvoPhone X"),
    ("What is the range of the voltrider-e2?", "VoltRider E2"),
    ("מה הטווח של וולטריידר?", "VoltRider E2"),
    ("המשקל של BrewMaster 360?", "BrewMaster 360"),
])
def test_product_questions_retrieve_then_generate(question: str, product: str) -> None:
    plan = plan_for(question)
    (retrieve, generate) = plan.steps
    assert (retrieve.tool, generate.tool) == RAG
    assert product in retrieve.arguments["query"]
    assert generate.arguments == {"question": question, "passages": {"$ref": "s1"}}
    assert generate.depends_on == ("s1",)
    assert plan.synthesis_required


def test_two_products_in_one_question() -> None:
    plan = plan_for("Compare the PrintForge Mini and the EvoPhone X")
    assert [s.tool for s in plan.steps] == [*RAG, *RAG]
    assert plan.steps[3].arguments["passages"] == {"$ref": "s3"}


@pytest.mark.parametrize(("question", "reviews"), [
    ('Analyse: "battery died in a week, but the screen is gorgeous"',
     ["battery died in a week, but the screen is gorgeous"]),
    ("Analyze this review: the coffee is great but the machine is loud",
     ["the coffee is great but the machine is loud"]),
    ("Review “great phone” and “terrible battery”", ["great phone", "terrible battery"]),
    ("נתח את הביקורת ״מעולה, ממליץ״", ["מעולה, ממליץ"]),
    ("נתח את הביקורת 'מעולה' בבקשה", ["מעולה"]),
])
def test_review_analysis(question: str, reviews: list[str]) -> None:
    plan = plan_for(question)
    assert [(s.tool, dict(s.arguments)) for s in plan.steps] == [
        ("analyzeReview", {"review_text": r}) for r in reviews]
    assert plan.synthesis_required == (len(reviews) > 1)


def test_review_with_a_product_question() -> None:
    plan = plan_for('נתח את הביקורת "המסך מדהים אבל מתחמם בטעינה" ותגיד מה מהירות הטעינה של EvoPhone X')
    assert shape(plan) == [
        ("analyzeReview", {"review_text": "המסך מדהים אבל מתחמם בטעינה"}, []),
        ("getProductInformation", {"query": "מה מהירות הטעינה של EvoPhone X"}, []),
        ("ragGeneration", {"question": "מה מהירות הטעינה של EvoPhone X", "passages": {"$ref": "s2"}}, ["s2"])]


def test_quotes_without_a_review_cue_are_not_reviews() -> None:
    assert tools(plan_for('What does "hello" mean?')) == Counter(["generalChat"])


@pytest.mark.parametrize("question", [
    "Tell me a short joke about databases",
    "hello there",
    "שלום, מה שלומך?",
    "Who should I vote for?",
    "What's the weather in Haifa, and who should I vote for?",
    "למי להצביע בבחירות?",
    "  Who is the prime minister of Israel?\n",
])
def test_general_chat_gets_the_whole_input(question: str) -> None:
    plan = plan_for(question, history=(("What is 2+3?", "5"),))
    assert shape(plan) == [("generalChat", {"message": question.strip()}, [])]
    assert not plan.synthesis_required


@pytest.mark.parametrize("question", ["", "   ", "\n\t "])
def test_empty_question_is_a_planning_error(question: str) -> None:
    with pytest.raises(PlanningError, match="empty"):
        PLANNER.plan(PlanningQuery(question, "c1", "t1", "en"))


@pytest.mark.parametrize("question", [
    "?", "$$$", '""', "''", "(((", "2+", "% of", "1/0", "😀😀", "ו", "and and and", ":",
    "x" * 5000 + " 2+3", " and ".join(["what is 2+3"] * 40), "I have 5 dollars " * 300,
    'נתח את הביקורת ""', "review:", "2024-05-01", "$5 + 3 ש\"ח",
])
def test_odd_input_still_gets_a_valid_plan(question: str) -> None:
    plan = plan_for(question)
    assert plan.steps
    for step in plan.steps:
        assert all(v != "" for v in step.arguments.values())


def test_determinism_and_json_round_trip() -> None:
    for question, _, _ in SECTION_11:
        plan = plan_for(question)
        assert plan_for(question).to_json() == plan.to_json()
        assert Plan.from_json(plan.to_json()) == plan


def test_synthesis_flag_rule() -> None:
    assert not plan_for("What is 12.5% of 240?").synthesis_required
    assert not plan_for('Analyse: "great"').synthesis_required
    assert not plan_for("Tell me a joke").synthesis_required
    assert plan_for("What's the temperature in Haifa right now?").synthesis_required
    assert plan_for("USD to EUR rate").synthesis_required
    assert plan_for("What is 2+3 and what is 10*4?").synthesis_required


def test_planner_protocol() -> None:
    planner: Planner = OfflinePlanner()
    assert planner.name == "offline-rules"
    plan = planner.plan(PlanningQuery("What is 2+3?", "c1", "t1", "en"))
    assert plan.steps == (PlanStep("s1", "calculateMath", {"expression": "2+3"}),)


@pytest.mark.parametrize(("text", "language"), [
    ("What is 2+3?", "en"),
    ("כמה זה 7 כפול 8", "he"),
    ("מה מהירות הטעינה של EvoPhone X", "he"),
    ("המשקל של BrewMaster 360?", "he"),
    ("מה שער USD?", "he"),
    ("What does שלום mean?", "en"),
    ("", "en"),
    ("12345", "en"),
])
def test_detect_language(text: str, language: str) -> None:
    assert detect_language(text) == language
