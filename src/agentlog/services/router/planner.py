"""Planners turn a question into a Plan; OfflinePlanner does it with deterministic rules, offline.

The offline planner works in four passes, all pure and driven by the tables in rules.py:

1. Empty or blank input raises PlanningError. Refusal topics (politics, malware) go whole to one
   generalChat step, whose tool refuses. Questions about earlier turns ("what did I ask before?",
   "מה שאלתי קודם?") get one recallConversation step, into which the router writes the
   conversation's memory window; the synthesizer answers from it.
2. Quoted text next to a review cue ("analyse", "review", נתח, ביקורת) becomes an analyzeReview step
   and is blanked out; so is the text after "review:" when nothing is quoted.
3. The rest is cut at clause boundaries (" and ", ", ", "; ", sentence ends, Hebrew " ו" before a
   question word) and neighbouring pieces are regrouped: among the groupings in which every group is
   understood on its own, the one with the most groups wins. So "What is 2+3 and what is 10*4?" is
   two questions, while "I have 500 shekels and two gadgets cost 40 dollars each" stays one, since
   neither half means anything alone. If nothing is understood the plan is one generalChat step
   with the whole input (after a review, the leftover words are dropped instead).
4. A group yields, in order of appearance, its product questions (getProductInformation ->
   ragGeneration), one currency question (rate; conversion = rates -> amount * {{sN}}; budget or
   sum = rates -> base - quantity * cost * {{sN}} ...; an amount is written as "20% of 350" or
   "3 * 12" when the question takes a share of it or prices a quantity) and its weather cities
   (getWeather); arithmetic (calculateMath) only when none of these is there. A bare rate question
   is dropped when the group names a product ("how much is the EvoPhone X in euros" is a catalogue
   question). A group whose steps leave out a number it contains, or that computes beside an
   operation the rules cannot write ("half of", "log"), is not understood: better the generalChat
   plan than the answer to another question.

Steps are numbered s1, s2, ... across the whole plan; only a calculation that uses rates depends on
anything, so everything else runs in parallel. `finalAnswerSynthesisRequired` is false only for a
plan of one step whose tool output already answers the user (generalChat, analyzeReview,
calculateMath); every other plan is synthesised. A question that would need more than MAX_STEPS
steps gets the generalChat plan instead. The conversation history itself is not read by these rules:
the router adds it to the recallConversation and generalChat steps (router/memory.py).
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import Protocol

from agentlog.errors import AgentlogError
from agentlog.events.plan import Plan, PlanError, PlanStep, validate_plan
from agentlog.services.router import rules
from agentlog.services.router.memory import RECALL_TOOL
from agentlog.services.router.rules import (
    HEB,
    ConversionIntent,
    Intent,
    MathIntent,
    Money,
    ProductIntent,
    RateIntent,
    ReviewIntent,
    Steps,
    SumIntent,
    WeatherIntent,
)


@dataclass(frozen=True)
class PlanningQuery:
    user_input: str
    conversation_id: str
    turn_id: str
    language: str  # "he" or "en", from detect_language
    history: tuple[tuple[str, str], ...] = ()  # earlier (question, answer) pairs, oldest first


class PlanningError(AgentlogError):
    """A planner could not produce a plan; the message says why."""


class Planner(Protocol):
    name: str

    def plan(self, query: PlanningQuery) -> Plan: ...


def detect_language(text: str) -> str:
    """"he" when Hebrew letters outnumber Latin ones, else "en". Catalogue product names and
    currency codes do not count: "המשקל של BrewMaster 360?" is a Hebrew question."""
    for _, pattern in rules.PRODUCT_PATTERNS:
        text = pattern.sub(" ", text)
    text = re.sub(r"\b[A-Z]{3}\b", " ", text)
    hebrew = len(re.findall(f"[{HEB}]", text))
    latin = len(re.findall("[A-Za-z]", text))
    return "he" if hebrew > latin else "en"


SELF_ANSWERING_TOOLS = frozenset({"generalChat", "analyzeReview", "calculateMath"})
RECALL_PLAN = Plan(steps=(PlanStep("s1", RECALL_TOOL, {}),), synthesis_required=True)
MAX_PIECES = 12

_HEB_QUESTION = ("(?:מה|מהו|מהי|מהם|כמה|איך|אילו|איזה|איזו|מתי|האם|מי|איפה|היכן|למה|תגיד|תגידי|"
                 f"תסביר|תסבירי|תן|תני|גם|בנוסף|תבדוק|תבדקי)(?![{HEB}])")
SEPARATOR = re.compile(
    rf"\s*[,;](?=\s)\s*(?:(?:and|also)\s+|ו(?={_HEB_QUESTION}))?|\s+and\s+|\s+ו(?={_HEB_QUESTION})"
    r"|(?<=[?!.])\s+", re.IGNORECASE)
LEADING_CONNECTOR = re.compile(
    r"^(?:(?:and|also|then|plus|so|but|please)\s+|(?:וגם|גם|בנוסף|בבקשה)\s+"
    r"|(?:תגיד|תגידי|תסביר|תסבירי)(?:\s+לי)?\s+)+", re.IGNORECASE)
AMOUNT_BEFORE = re.compile(rf"(?<![\w.,])({rules.NUMBER})\s*-?\s*$")
AMOUNT_AFTER = re.compile(rf"\s*({rules.NUMBER})(?!\w)")
WORD = re.compile(r"[\w'\"״]+")
NUMBER_WRITTEN = re.compile(rf"(?<![A-Za-z\d.,])(?:{rules.NUMBER})(?![A-Za-z\d])")


class OfflinePlanner:
    """Rule-based, deterministic planner for English and Hebrew questions (no model, no network)."""

    name: str = "offline-rules"

    def plan(self, query: PlanningQuery) -> Plan:
        text = " ".join(query.user_input.split())
        if not text:
            raise PlanningError("the question is empty: there is nothing to plan")
        chat = _chat(query.user_input.strip())
        if rules.REFUSAL_TOPICS.search(text):
            return chat
        if rules.HISTORY.search(text):
            return RECALL_PLAN
        if (email := rules.email_step(text)) is not None:
            return Plan(steps=(email,), synthesis_required=True)
        reviews, rest = _reviews(text)
        found = _understand(rest, review_mode=bool(reviews))
        if found is None and not reviews:
            return chat
        steps = Steps()
        for intent in sorted([*reviews, *(found or [])], key=lambda i: i.position):
            intent.emit(steps)
        plan = Plan(steps=tuple(steps.steps), synthesis_required=_synthesis_required(steps))
        try:
            validate_plan(plan)  # also refuses more than MAX_STEPS steps
        except PlanError:
            return chat
        return plan


def _chat(message: str) -> Plan:
    return Plan(steps=(PlanStep("s1", "generalChat", {"message": message}),), synthesis_required=False)


def _synthesis_required(steps: Steps) -> bool:
    return not (len(steps.steps) == 1 and steps.steps[0].tool in SELF_ANSWERING_TOOLS)


# --- pass 2: reviews ----------------------------------------------------------------------------

def _reviews(text: str) -> tuple[list[Intent], str]:
    """analyzeReview intents for quoted reviews, and the text with those quotes blanked out."""
    if not rules.REVIEW_CUE.search(text):
        return [], text
    found: list[Intent] = []
    for match in rules.QUOTED.finditer(text):
        body = next(g for g in match.groups() if g is not None).strip()
        if body:
            found.append(ReviewIntent(match.start(), body))
            text = text[:match.start()] + " " * (match.end() - match.start()) + text[match.end():]
    if not found:
        cue = rules.REVIEW_CUE.search(text)
        colon = text.find(":", cue.end()) if cue else -1
        if colon >= 0 and text[colon + 1:].strip():
            found.append(ReviewIntent(colon + 1, text[colon + 1:].strip()))
            text = text[:colon + 1]
    return found, text


# --- pass 3: clauses and grouping ---------------------------------------------------------------

def _pieces(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for match in SEPARATOR.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    spans = [(s, e) for s, e in spans if text[s:e].strip(" \t,;:.?!-")]
    if len(spans) > MAX_PIECES:
        spans = [*spans[:MAX_PIECES - 1], (spans[MAX_PIECES - 1][0], spans[-1][1])]
    return spans


def _understand(text: str, *, review_mode: bool) -> list[Intent] | None:
    """Intents of the best grouping of the clauses of `text`, or None if no grouping is understood."""
    pieces = _pieces(text)
    if not pieces:
        return [] if review_mode else None
    n = len(pieces)
    best: list[tuple[int, list[Intent]] | None] = [None] * (n + 1)
    best[0] = (0, [])
    for j in range(1, n + 1):
        for i in range(j):
            before = best[i]
            if before is None:
                continue
            start, end = pieces[i][0], pieces[j - 1][1]
            intents = _clause(text[start:end], start, whole=(i == 0 and j == n), review_mode=review_mode)
            current = best[j]
            if intents is not None and (current is None or before[0] + 1 > current[0]):
                best[j] = (before[0] + 1, before[1] + intents)
    result = best[n]
    return None if result is None else result[1]


def _clause(text: str, offset: int, *, whole: bool, review_mode: bool) -> list[Intent] | None:
    """The intents of one clause, [] for review filler, None when the clause is not understood."""
    if review_mode and all(w.lower() in rules.REVIEW_FILLER for w in WORD.findall(text)):
        return []
    products, bare = _products(text, offset)
    currency = _currency(text, offset)
    if products and isinstance(currency, RateIntent):
        currency = None
    intents: list[Intent] = [*products, *([currency] if currency else []), *_weather(text, offset)]
    if not intents:
        intents = list(_math(text, offset))
    if not intents or (intents == products and bare and not whole) or not _uses_every_number(text, intents):
        return None
    computes = any(isinstance(i, MathIntent | ConversionIntent | SumIntent) for i in intents)
    if computes and rules.MATH_UNSUPPORTED.search(_math_text(text)):
        return None  # "half of 10 plus 2" is not 10 + 2
    return sorted(intents, key=lambda i: i.position)


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in NUMBER_WRITTEN.findall(text)}


def _uses_every_number(text: str, intents: list[Intent]) -> bool:
    """Whether the steps of `intents` use every number written in the clause: a rule that understood
    only part of it ("20% of 350 shekels" read as 350 shekels) would answer another question."""
    steps = Steps()
    for intent in intents:
        intent.emit(steps)
    used = set().union(*(_numbers(json.dumps(dict(s.arguments), ensure_ascii=False)) for s in steps.steps))
    return _numbers(text) <= used


def _clean(text: str) -> str:
    text = LEADING_CONNECTOR.sub("", text.strip(" \t,;:.-–"))
    return " ".join(text.split())


# --- pass 4: what a clause asks -----------------------------------------------------------------

def _products(text: str, offset: int) -> tuple[list[Intent], bool]:
    """Catalogue questions, and whether the clause is nothing but product names and filler words."""
    found = sorted((m.start(), name) for name, pattern in rules.PRODUCT_PATTERNS
                   if (m := pattern.search(text)) is not None)
    question = _clean(text)
    intents: list[Intent] = []
    for position, name in found:
        alone = len(found) == 1 and name in question
        intents.append(ProductIntent(offset + position, name, question, question if alone else f"{name}: {question}"))
    rest = text
    for _, pattern in rules.PRODUCT_PATTERNS:
        rest = pattern.sub(" ", rest)
    bare = all(w.lower() in rules.PRODUCT_STOPWORDS for w in WORD.findall(rest))
    return intents, bare


@dataclass(frozen=True)
class _Mention:
    code: str
    start: int
    end: int
    prefix: str  # Hebrew prefix letters glued to the word (בשקלים -> ב)
    amount: str | None  # the number written next to it, thousands separators removed
    span: tuple[int, int]  # amount and currency together


def _mentions(text: str) -> list[_Mention]:
    """Currency words and symbols in order, each with the amount written next to it, if any."""
    raw = sorted(((m.start(), -len(m.group(0)), code, m) for code, pattern in rules.CURRENCY_PATTERNS
                  for m in pattern.finditer(text)), key=lambda r: (r[0], r[1], r[2]))
    mentions: list[_Mention] = []
    taken = 0  # text before this is already used by earlier mentions
    for start, _, code, match in raw:
        if start < taken:
            continue
        groups = match.groupdict()
        amount: str | None = None
        span = (start, match.end())
        before = AMOUNT_BEFORE.search(text, taken, start)
        after = AMOUNT_AFTER.match(text, match.end())
        if before:
            amount, span = before.group(1), (before.start(1), match.end())
        elif after and (groups.get("sym") or match.group(0).upper() == code):
            amount, span = after.group(1), (start, after.end(1))
        mentions.append(_Mention(code, start, match.end(), groups.get("pfx") or "",
                                 amount.replace(",", "") if amount else None, span))
        taken = span[1]
    return mentions


def _target_score(text: str, mention: _Mention) -> int:
    """How much the words around a currency say it is the one to convert into."""
    before = text[max(0, mention.start - 40):mention.start]
    if rules.STRONG_TARGET_BEFORE.search(before):
        return 2
    if mention.prefix[-1:] in ("ב", "ל") or rules.TARGET_BEFORE.search(before):
        return 1
    if mention.prefix.endswith("מ") or rules.SOURCE_BEFORE.search(before):
        return -1
    return 0


def _currency(text: str, offset: int) -> Intent | None:
    mentions = _mentions(text)
    if not mentions:
        return None
    amounts = [m for m in mentions if m.amount is not None]
    if amounts:
        return _amounts(text, offset, mentions, amounts)
    if rules.REMAINDER_CUE.search(text):
        return None
    first = mentions[0]
    second = next((m for m in mentions if m.code != first.code), None)
    if second is None:
        if not rules.RATE_CUE.search(text):
            return None
        other = rules.default_counterpart(first.code)
        if _target_score(text, first) > 0:
            return RateIntent(offset + first.start, other, first.code)
        return RateIntent(offset + first.start, first.code, other)
    scores = _target_score(text, first), _target_score(text, second)
    if not rules.RATE_CUE.search(text) and scores == (0, 0):
        return None
    source, target = (second, first) if scores[0] > scores[1] else (first, second)
    return RateIntent(offset + first.start, source.code, target.code)


def _amounts(text: str, offset: int, mentions: list[_Mention], amounts: list[_Mention]) -> Intent | None:
    """A sum ("300 dollars minus 45 euros"), a budget, a conversion or a price of amounts of money."""
    each = rules.EACH_CUE.search(text) is not None
    money = [_money(text, amount, amounts[i - 1].span[1] if i else 0, each=each) for i, amount in enumerate(amounts)]
    position = offset + amounts[0].span[0]
    targets = [m for m in mentions if m.amount is None]
    operators = [rules.SUM_OPERATOR.fullmatch(text, a.span[1], b.span[0]) for a, b in itertools.pairwise(amounts)]
    if operators and all(operators):
        signs = ["-" if op and op.group("minus") else "+" for op in operators]
        target = _best_target(text, targets) if targets else money[0].code
        return SumIntent(position, tuple(zip(["", *signs], money, strict=True)), target)
    if len(amounts) >= 2 and rules.BUDGET_CUE.search(text):
        base = next((i for i, a in enumerate(amounts) if rules.HAVE_BEFORE.search(text, 0, a.span[0])), 0)
        costs = [("-", m) for i, m in enumerate(money) if i != base]
        return SumIntent(position, (("", money[base]), *costs), money[base].code)
    sources = {a.code for a in amounts}
    if targets := [m for m in targets if m.code not in sources]:
        target = _best_target(text, targets)
    elif len(money) == 1 and (money[0].percent or money[0].quantity):
        return MathIntent(position, money[0].term())  # a price or a share in its own currency
    elif rules.CONVERT_CUE.search(text) and not rules.BUDGET_CUE.search(text):
        target = rules.default_counterpart(amounts[0].code)
    else:
        return None
    converted = tuple(m for m in money if m.code != target)
    return ConversionIntent(position, converted, target) if converted else None


def _best_target(text: str, targets: list[_Mention]) -> str:
    return max(targets, key=lambda m: _target_score(text, m)).code


def _money(text: str, amount: _Mention, previous_end: int, *, each: bool) -> Money:
    """An amount with what is written around it: the percentage taken of it ("20% of 350 shekels")
    or the quantity it is the price of ("3 kg at 12 shekels per kg", "two gadgets at 40 dollars each")."""
    start, end = amount.span
    percent = rules.PERCENT_OF_BEFORE.search(text, previous_end, start)
    quantity: str | None = None
    if per_unit := rules.PER_UNIT_AFTER.match(text, end):
        unit = rules.unit_of(per_unit.group("unit"))
        quantity = next((m.group("qty").replace(",", "") for m in rules.QUANTITY_OF_UNIT.finditer(text, previous_end, start)
                         if rules.unit_of(m.group("unit")) == unit), None)
    elif each and (count := _quantity(text, previous_end, start)) is not None:
        quantity = str(count)
    return Money(amount.amount or "", amount.code, quantity, percent.group("pct").replace(",", "") if percent else None)


def _quantity(text: str, start: int, end: int) -> int | None:
    """The last count ("two", "3", "שתי") written between two amounts: two gadgets at 40 dollars each."""
    counts = list(rules.QUANTITY.finditer(text, start, end))
    if not counts:
        return None
    last = counts[-1]
    if last.group("num"):
        return int(last.group("num"))
    return rules.QUANTITIES.get(" ".join(last.group("word").lower().split()))


def _weather(text: str, offset: int) -> list[Intent]:
    if not rules.WEATHER_CUE.search(text):
        return []
    cities = sorted((m.start(), name) for name, pattern in rules.CITY_PATTERNS
                    if (m := pattern.search(text)) is not None)
    if not cities:
        for match in rules.CAPITALISED_PLACE.finditer(text):
            words = match.group(1).rstrip(".,'").split()
            while words and words[-1].lower() in rules.NOT_PLACES:
                words.pop()
            if words and words[0].lower() not in rules.NOT_PLACES:
                cities.append((match.start(1), " ".join(words)))
                break
    return [WeatherIntent(offset + position, city) for position, city in cities]


def _math(text: str, offset: int) -> list[Intent]:
    """Each arithmetic expression in the clause, rewritten to ASCII ("7 כפול 8" -> "7 * 8")."""
    text = _math_text(text)
    found: list[Intent] = []
    for match in rules.MATH_RUN.finditer(text):
        expression = _balanced(rules.MATH_TRAILING_JUNK.sub("", rules.MATH_LEADING_JUNK.sub("", match.group(0))))
        if rules.MATH_BINARY.search(expression):
            found.append(MathIntent(offset + match.start(), " ".join(expression.split())))
    return found


def _math_text(text: str) -> str:
    for pattern, replacement in rules.MATH_REWRITES:
        text = pattern.sub(replacement, text)
    return text


def _balanced(expression: str) -> str:
    """Drop an unmatched outer parenthesis ("(2+3" -> "2+3"); give up on any other imbalance."""
    while expression.startswith("(") and expression.count("(") > expression.count(")"):
        expression = expression[1:].lstrip()
    while expression.endswith(")") and expression.count(")") > expression.count("("):
        expression = expression[:-1].rstrip()
    return expression if expression.count("(") == expression.count(")") else ""
