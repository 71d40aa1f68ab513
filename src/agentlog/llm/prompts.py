"""The words sent to models: the planner's rules and examples, the synthesizer's instructions.

Kept apart from the code so a prompt change is one reviewable diff. The planner examples follow the
offline planner's conventions (llm/planner.py drops those whose tools this process does not list).
"""

from __future__ import annotations

from agentlog.events.plan import Plan, PlanStep

PLANNER_RULES = """You are the planner of an assistant. Turn the user's question into a plan of tool calls.
Reply with exactly one JSON object and nothing else: {"steps": [...], "finalAnswerSynthesisRequired": true|false}.
Rules:
- Use only the tools listed below, with argument names exactly as in their parameters; give every required argument.
- Number the steps s1, s2, ... in order. Each step is {"id", "tool", "arguments", "dependsOn"}.
- A step that needs an earlier result refers to it as {{sN}} inside a string, or as {"$ref": "sN"} for the whole
  value, and lists sN in dependsOn. Steps that need nothing have "dependsOn": [] and run in parallel.
- Write places in English and currencies as ISO codes (ירושלים -> Jerusalem, שקל -> ILS, dollar -> USD).
- Arithmetic expressions use ASCII digits and + - * / ( ) % only.
- A question about a catalogue product (PrintForge Mini, BrewMaster 360, EvoPhone X, VoltRider E2) retrieves
  product information first and answers from it.
- Anything no other tool answers (chat, jokes, questions about earlier turns, politics) is one generalChat step
  with the user's message.
- finalAnswerSynthesisRequired is false only for a single step whose output answers the user by itself
  (generalChat, analyzeReview, calculateMath); otherwise true."""


def _plan(*steps: tuple[str, dict[str, object], tuple[str, ...]], synthesis: bool = True) -> Plan:
    return Plan(steps=tuple(PlanStep(f"s{i}", tool, arguments, depends)
                            for i, (tool, arguments, depends) in enumerate(steps, start=1)),
                synthesis_required=synthesis)


PLANNER_EXAMPLES: tuple[tuple[str, Plan], ...] = (
    ("What's the weather in Tel Aviv, and what is 15% of 80?",
     _plan(("getWeather", {"city": "Tel Aviv"}, ()), ("calculateMath", {"expression": "15% of 80"}, ()))),
    ("How many shekels are 200 euros?",
     _plan(("getExchangeRate", {"from": "EUR", "to": "ILS"}, ()),
           ("calculateMath", {"expression": "200 * {{s1}}"}, ("s1",)))),
    ('יש לי 200 ש"ח ואני קונה שלושה ספרים ב-12 דולר כל אחד, כמה יישאר לי?',
     _plan(("getExchangeRate", {"from": "USD", "to": "ILS"}, ()),
           ("calculateMath", {"expression": "200 - 3 * 12 * {{s1}}"}, ("s1",)))),
    ("מה המשקל של BrewMaster 360?",
     _plan(("getProductInformation", {"query": "מה המשקל של BrewMaster 360?"}, ()),
           ("ragGeneration", {"question": "מה המשקל של BrewMaster 360?", "passages": {"$ref": "s1"}}, ("s1",)))),
    ('Analyse this review: "arrived late, but works perfectly"',
     _plan(("analyzeReview", {"review_text": "arrived late, but works perfectly"}, ()), synthesis=False)),
    ("ספר לי בדיחה על קפקא",
     _plan(("generalChat", {"message": "ספר לי בדיחה על קפקא"}, ()), synthesis=False)),
    ("What is (17 + 5) * 3?",
     _plan(("calculateMath", {"expression": "(17 + 5) * 3"}, ()), synthesis=False)),
)

SYNTHESIS_RULES = {
    "en": "Answer in English.",
    "he": "ענה בעברית (Answer in Hebrew).",
}

SYNTHESIS_PROMPT = """You write the final answer of an assistant to the user's question, from the results of the
tools it ran (given as JSON). {language}
- Use only facts in the tool results; never invent a number, name or fact that is not there.
- If a step failed or was skipped, say plainly what could not be found and why, in one sentence.
- Lead with the direct answer (for a calculation that used earlier results, its result).
- Be brief: at most four short sentences, plain text, no JSON, no headings."""
