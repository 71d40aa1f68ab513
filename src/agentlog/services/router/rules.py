"""Word tables and intents of the offline planner.

Everything a rule looks for in English or Hebrew is listed here as data: currencies, cities,
products, and the cue words of each kind of question. `keywords` turns a table into one
case-insensitive pattern; Hebrew words may carry the one-letter prefixes (ו ב ל מ ה ש כ), and in
spellings a space also matches a hyphen or nothing, `"` also matches `״` and `'` is optional.
The intents at the end are what the planner understood in a clause; each one emits its plan steps.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agentlog.events.plan import PlanStep

HEB = "\u05d0-\u05ea"
HEB_PREFIXES = "[ובלמהשכ]{0,3}"
NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"


def _spelling(word: str) -> str:
    parts: list[str] = []
    for char in word:
        if char == " ":
            parts.append(r"[\s-]*")
        elif char in "\"״":
            parts.append("[\"״]?")
        elif char in "'׳":
            parts.append("['׳]?")
        else:
            parts.append(re.escape(char))
    return "".join(parts)


def _alternation(words: Iterable[str]) -> str:
    return "|".join(_spelling(w) for w in sorted(set(words), key=lambda w: (-len(w), w)))


def english(words: Iterable[str]) -> str:
    return rf"(?<!\w)(?:{_alternation(words)})(?!\w)"


def hebrew(words: Iterable[str], *, prefixes: bool = True, capture: bool = False) -> str:
    prefix = HEB_PREFIXES if prefixes else ""
    prefix = f"(?P<pfx>{prefix})" if capture else f"(?:{prefix})"
    return rf"(?<![{HEB}]){prefix}(?:{_alternation(words)})(?![{HEB}])"


def keywords(en: Iterable[str] = (), he: Iterable[str] = (), he_bare: Iterable[str] = ()) -> re.Pattern[str]:
    """One pattern for English words, prefixable Hebrew words and Hebrew words taken as they are."""
    parts = [english(en)] if en else []
    parts += [hebrew(he)] if he else []
    parts += [hebrew(he_bare, prefixes=False)] if he_bare else []
    return re.compile("|".join(parts), re.IGNORECASE)


# --- currencies -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Currency:
    code: str
    english: tuple[str, ...]
    hebrew: tuple[str, ...]
    symbols: tuple[str, ...] = ()

    def pattern(self) -> re.Pattern[str]:
        parts = [f"(?P<sym>{'|'.join(map(re.escape, self.symbols))})"] if self.symbols else []
        parts.append(english((self.code.lower(), *self.english)))
        parts.append(hebrew(self.hebrew, capture=True))
        return re.compile("|".join(parts), re.IGNORECASE)


CURRENCIES = (
    Currency("USD", ("dollar", "dollars", "us dollar", "us dollars", "buck", "bucks"),
             ("דולר", "דולרים", "דולר אמריקאי"), ("$", "US$")),
    Currency("EUR", ("euro", "euros"), ("אירו", "יורו", "אירואים"), ("€",)),
    Currency("GBP", ("pound", "pounds", "pound sterling", "sterling", "quid"),
             ('ליש"ט', "פאונד", "פאונדים", "לירה שטרלינג", "לירות שטרלינג"), ("£",)),
    Currency("ILS", ("shekel", "shekels", "nis", "new shekel", "new shekels"),
             ("שקל", "שקלים", 'ש"ח', "שקל חדש"), ("₪",)),
    Currency("JPY", ("yen", "japanese yen"), ("ין יפני", "יין יפני"), ("¥",)),
    Currency("CHF", ("swiss franc", "swiss francs", "franc", "francs"), ("פרנק", "פרנקים", "פרנק שוויצרי")),
    Currency("CAD", ("canadian dollar", "canadian dollars"), ("דולר קנדי",)),
    Currency("AUD", ("australian dollar", "australian dollars"), ("דולר אוסטרלי",)),
    Currency("CNY", ("yuan", "renminbi"), ("יואן",)),
    Currency("INR", ("rupee", "rupees", "indian rupee"), ("רופי",)),
)
CURRENCY_PATTERNS = tuple((c.code, c.pattern()) for c in CURRENCIES)
HOME_CURRENCY = "ILS"  # the target when a question names only one currency
SECOND_CURRENCY = "USD"  # ... and that one currency is the shekel


def default_counterpart(code: str) -> str:
    return SECOND_CURRENCY if code == HOME_CURRENCY else HOME_CURRENCY


RATE_CUE = keywords(en=("rate", "rates", "exchange", "exchange rate", "worth", "value", "how much",
                        "how many", "convert", "conversion", "in terms of"),
                    he=("שער", "שווה", "שווי", "המרה", "להמיר", "המר", "כמה", "ערך"))
CONVERT_CUE = keywords(en=("convert", "conversion", "how much", "how many", "worth", "exchange"),
                       he=("המר", "להמיר", "המרה", "כמה", "שווה"))
REMAINDER_EN = ("left", "remain", "remains", "remaining", "leftover", "left over")
REMAINDER_HE = ("יישאר", "ישאר", "יישארו", "נשאר", "נשארו", "נותר", "נותרו", "יוותר")
# "how many dollars are left?" names the currency of an answer, not a rate to look up
REMAINDER_CUE = keywords(en=REMAINDER_EN, he=REMAINDER_HE)
BUDGET_CUE = keywords(
    en=(*REMAINDER_EN, "spend", "spent", "spending", "cost", "costs", "buy", "buys", "buying", "bought", "pay",
        "pays", "paid", "after", "budget", "change"),
    he=(*REMAINDER_HE, "קונה", "קונים", "קנה", "קניתי", "לקנות", "עולה", "עולות", "עולים", "משלם", "שילמתי",
        "לשלם", "אחרי", "הוצאתי", "תקציב"))
HAVE_BEFORE = re.compile(
    r"(?:(?<!\w)(?:have|has|got|with|from|budget(?:\s+of)?)\s+"
    rf"|(?<![{HEB}])(?:יש(?:\s+(?:לי|לו|לה|לנו|להם))?\s+|מ-?\s*|מתוך\s+|תקציב(?:\s+של)?\s+))"
    r"[$€£₪¥]?\s*$", re.IGNORECASE)
EACH_CUE = keywords(en=("each", "apiece", "a piece", "per item", "per unit", "per piece", "each one"),
                    he_bare=("כל אחד", "כל אחת", "ליחידה", "כל יחידה", "האחד", "האחת", "לאחד", "לאחת"))
QUANTITIES = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "a pair of": 2, "a couple of": 2, "a dozen": 12,
    "שני": 2, "שתי": 2, "שניים": 2, "שתיים": 2, "זוג": 2, "שלוש": 3, "שלושה": 3, "שלושת": 3,
    "ארבע": 4, "ארבעה": 4, "חמש": 5, "חמישה": 5, "שש": 6, "שישה": 6, "שבע": 7, "שבעה": 7,
    "שמונה": 8, "תשע": 9, "תשעה": 9, "עשר": 10, "עשרה": 10,
}
QUANTITY = re.compile(
    rf"(?P<num>(?<![\w.,$€£₪¥])\d+(?![\w.,%$€£₪¥]))|(?P<word>{english(QUANTITIES)})", re.IGNORECASE)
STRONG_TARGET_BEFORE = re.compile(r"(?:(?<!\w)how\s+(?:many|much)|(?<![\u05d0-\u05ea])כמה)\s+$", re.I)
TARGET_BEFORE = re.compile(r"(?:(?<!\w)(?:to|in|into)\s+(?:the\s+)?|/\s*|->\s*)$", re.IGNORECASE)
SOURCE_BEFORE = re.compile(r"(?<!\w)from\s+(?:the\s+|a\s+|one\s+)?$", re.IGNORECASE)

# --- what an amount is written with: a percentage, a unit price, an operator ----------------------

# "20% of 350 shekels", "15 percent of 80 dollars", "20 אחוז מ-350 ש\"ח": the text just before the amount
PERCENT_OF_BEFORE = re.compile(
    rf"(?<![\w.,])(?P<pct>{NUMBER})\s*(?:%|per\s*cent|(?<![{HEB}])אחוז(?:ים)?)\s*"
    r"(?:of(?:\s+the)?|מתוך|מן|מ)\s*-?\s*[$€£₪¥]?\s*$", re.IGNORECASE)
# (unit, English spellings, Hebrew spellings): "3 kg at 12 shekels per kg" costs 3 * 12
UNITS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("kg", ("kg", "kgs", "kilo", "kilos", "kilogram", "kilograms"), ('ק"ג', "קילו", "קילוגרם", "קילוגרמים")),
    ("g", ("g", "gram", "grams"), ("גרם", "גרמים")),
    ("lb", ("lb", "lbs"), ()),
    ("l", ("l", "liter", "liters", "litre", "litres"), ("ליטר", "ליטרים")),
    ("m", ("m", "meter", "meters", "metre", "metres"), ("מטר", "מטרים")),
    ("hour", ("hour", "hours", "hr", "hrs"), ("שעה", "שעות")),
    ("item", ("item", "items", "unit", "units", "piece", "pieces"), ("יחידה", "יחידות", "פריט", "פריטים")),
)
_UNIT_CHARS = str.maketrans("", "", "\"״'׳ -")
UNIT_NAMES = {spelling.lower().translate(_UNIT_CHARS): unit for unit, en, he in UNITS for spelling in (*en, *he)}
UNIT = rf"(?P<unit>{_alternation(w for _, en, he in UNITS for w in (*en, *he))})(?![A-Za-z{HEB}])"
QUANTITY_OF_UNIT = re.compile(rf"(?<![\w.,])(?P<qty>{NUMBER})\s*-?\s*{UNIT}", re.IGNORECASE)
PER_UNIT_AFTER = re.compile(
    rf"\s*(?:(?<!\w)(?:per|a|an|each|every|for\s+(?:a|one|each|every))\s+|/\s*|(?<![{HEB}])(?:לכל\s+|ל-?\s*)){UNIT}",
    re.IGNORECASE)
# the whole text between two amounts when the question adds or subtracts them: "300 dollars minus 45 euros"
SUM_OPERATOR = re.compile(
    rf"\s*(?:(?P<minus>[-−–]|(?<!\w)(?:minus|less)(?!\w)|(?<![{HEB}])פחות(?![{HEB}]))"
    rf"|(?P<plus>\+|(?<!\w)plus(?!\w)|(?<![{HEB}])ועוד(?![{HEB}])))\s*", re.IGNORECASE)


def unit_of(spelling: str) -> str:
    """The unit a spelling names, so "3 kilos" and "per kg" are the same unit."""
    return UNIT_NAMES.get(spelling.lower().translate(_UNIT_CHARS), spelling.lower())


# --- weather ----------------------------------------------------------------------------------

WEATHER_CUE = keywords(
    en=("weather", "temperature", "temperatures", "forecast", "rain", "raining", "rainy", "snow",
        "snowing", "sunny", "humid", "humidity", "hot", "cold", "warm", "degrees", "windy"),
    he=("מזג האוויר", "מזג אוויר", "טמפרטורה", "טמפרטורות", "תחזית", "גשם", "גשום", "מעלות", "לחות"),
    he_bare=("חם", "קר", "חמים", "קריר"))
# (English name, English spellings, Hebrew spellings)
CITIES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("Jerusalem", ("jerusalem",), ("ירושלים", "ירושלם")),
    ("Tel Aviv", ("tel aviv", "tel aviv-yafo", "tel aviv yafo"), ("תל אביב", "תל אביב יפו", "ת\"א")),
    ("Haifa", ("haifa",), ("חיפה",)),
    ("Eilat", ("eilat", "elat"), ("אילת",)),
    ("Beersheba", ("beersheba", "beer sheva", "be'er sheva", "beersheva"), ("באר שבע",)),
    ("Netanya", ("netanya",), ("נתניה",)),
    ("Ashdod", ("ashdod",), ("אשדוד",)),
    ("Ashkelon", ("ashkelon",), ("אשקלון",)),
    ("Herzliya", ("herzliya", "herzliyya"), ("הרצליה",)),
    ("Tiberias", ("tiberias",), ("טבריה",)),
    ("Nazareth", ("nazareth",), ("נצרת",)),
    ("Rishon LeZion", ("rishon lezion", "rishon le zion", "rishon letzion"), ("ראשון לציון",)),
    ("Petah Tikva", ("petah tikva", "petach tikva", "petah tikvah"), ("פתח תקווה", "פתח תקוה")),
    ("Holon", ("holon",), ("חולון",)),
    ("Ramat Gan", ("ramat gan",), ("רמת גן",)),
    ("Rehovot", ("rehovot",), ("רחובות",)),
    ("Kfar Saba", ("kfar saba",), ("כפר סבא",)),
    ("Ra'anana", ("raanana", "ra'anana"), ("רעננה",)),
    ("Modiin", ("modiin", "modi'in"), ("מודיעין",)),
    ("Acre", ("akko", "acco"), ("עכו",)),
    ("Safed", ("safed", "tzfat", "zefat"), ("צפת",)),
    ("Nahariya", ("nahariya",), ("נהריה",)),
    ("Dimona", ("dimona",), ("דימונה",)),
    ("London", ("london",), ("לונדון",)),
    ("Paris", ("paris",), ("פריז",)),
    ("New York", ("new york", "nyc"), ("ניו יורק",)),
    ("Tokyo", ("tokyo",), ("טוקיו",)),
    ("Berlin", ("berlin",), ("ברלין",)),
    ("Rome", ("rome",), ("רומא",)),
    ("Madrid", ("madrid",), ("מדריד",)),
    ("Barcelona", ("barcelona",), ("ברצלונה",)),
    ("Amsterdam", ("amsterdam",), ("אמסטרדם",)),
    ("Athens", ("athens",), ("אתונה",)),
    ("Vienna", ("vienna",), ("וינה",)),
    ("Prague", ("prague",), ("פראג",)),
    ("Budapest", ("budapest",), ("בודפשט",)),
    ("Lisbon", ("lisbon",), ("ליסבון",)),
    ("Istanbul", ("istanbul",), ("איסטנבול",)),
    ("Larnaca", ("larnaca",), ("לרנקה",)),
    ("Dubai", ("dubai",), ("דובאי",)),
    ("Cairo", ("cairo",), ("קהיר",)),
    ("Moscow", ("moscow",), ("מוסקבה",)),
    ("Bangkok", ("bangkok",), ("בנגקוק",)),
    ("Los Angeles", ("los angeles",), ("לוס אנג'לס",)),
)
CITY_PATTERNS = tuple((name, keywords(en=en, he=he)) for name, en, he in CITIES)
# "weather in Springfield": an unknown city written in capitals after in/at/for
CAPITALISED_PLACE = re.compile(r"(?<!\w)(?:in|at|for)\s+([A-Z][\w'.-]*(?:\s+[A-Z][\w'.-]*){0,3})")
NOT_PLACES = frozenset({"celsius", "fahrenheit", "today", "tomorrow", "tonight", "the", "my", "our",
                        "summer", "winter", "spring", "autumn", "fall", "january", "february", "march",
                        "april", "may", "june", "july", "august", "september", "october", "november",
                        "december", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                        "sunday", "english", "hebrew", "i"})

# --- products ---------------------------------------------------------------------------------

# (catalogue name, English pattern, Hebrew transliterations)
PRODUCTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("PrintForge Mini", r"print[\s-]*forge(?:[\s-]*mini)?", ("פרינטפורג' מיני", "פרינטפורג'")),
    ("BrewMaster 360", r"brew[\s-]*master(?:[\s-]*360)?", ("ברומאסטר 360", "ברומאסטר")),
    ("EvoPhone X", r"evo[\s-]*phone(?:[\s-]*x)?", ("אבופון X", "אבופון", "איבופון")),
    ("VoltRider E2", r"volt[\s-]*rider(?:[\s-]*e[\s-]*2)?", ("וולטריידר E2", "וולטריידר")),
)
PRODUCT_PATTERNS = tuple(
    (name, re.compile(rf"(?<![A-Za-z]){en}(?![A-Za-z0-9])|{hebrew(he)}", re.IGNORECASE))
    for name, en, he in PRODUCTS)
# words that do not make a clause a question of its own ("... and the EvoPhone X?")
PRODUCT_STOPWORDS = frozenset({"the", "a", "an", "and", "or", "of", "about", "also", "what", "how",
                               "ו", "את", "של", "גם", "ה", "מה", "לגבי", "ועל", "על"})

# --- reviews, chat topics ---------------------------------------------------------------------

REVIEW_CUE = keywords(en=("analyse", "analyze", "analysis", "review", "reviews", "sentiment", "feedback"),
                      he=("נתח", "נתחי", "תנתח", "תנתחי", "ניתוח", "ביקורת", "ביקורות", "חוות דעת",
                          "סנטימנט", "משוב"))
QUOTED = re.compile(
    r"(?<!\w)\"(?P<a>[^\"]{2,})\"(?!\w)|“(?P<b>[^”]{2,})”|„(?P<c>[^“”]{2,})[“”]|«(?P<d>[^»]{2,})»"
    r"|(?<!\w)״(?P<e>[^״]{2,})״(?!\w)|(?<!\w)'(?P<f>[^']{2,})'(?!\w)")
REVIEW_FILLER = frozenset({
    "analyse", "analyze", "analysis", "review", "reviews", "the", "this", "that", "a", "please",
    "following", "customer", "user", "sentiment", "of", "for", "me", "and", "then", "also", "it",
    "feedback", "can", "you", "could", "would", "kindly", "here", "is", "nt", "נתח", "נתחי", "תנתח",
    "תנתחי", "את", "הביקורת", "ביקורת", "הזאת", "הזו", "הבאה", "בבקשה", "ניתוח", "של", "ו", "לי",
    "הלקוח", "הלקוחה", "ה", "תוכל", "תוכלי", "אנא"})
HISTORY = re.compile(
    r"(?<!\w)what\s+(?:did|have|had)\s+i\s+(?:just\s+|previously\s+|already\s+)?(?:ask|asked|say|said|"
    r"tell|told|write|wrote)|(?<!\w)(?:my|the)\s+(?:last|previous|earlier|first|prior)\s+"
    r"(?:question|message|query)|(?<!\w)what\s+were\s+we\s+(?:talking|discussing)|"
    r"(?<!\w)remind\s+me\s+what\s+i|(?<!\w)earlier\s+i\s+asked"
    rf"|(?<![{HEB}])מה\s+(?:שאלתי|אמרתי|כתבתי|ביקשתי)|(?<![{HEB}])שאלתי\s+(?:אותך\s+)?(?:קודם|לפני)"
    rf"|(?<![{HEB}])(?:ה)?שאלה\s+(?:ה)?(?:קודמת|אחרונה|ראשונה)|(?<![{HEB}])על\s+מה\s+דיברנו",
    re.IGNORECASE)
REFUSAL_TOPICS = keywords(
    en=("vote", "votes", "voting", "election", "elections", "politics", "political", "politician",
        "politicians", "prime minister", "left-wing", "right-wing", "malware", "ransomware", "keylogger",
        "trojan", "computer virus", "phishing", "hack into", "ddos"),
    he=("להצביע", "אצביע", "הצבעה", "בחירות", "פוליטיקה", "פוליטי", "פוליטית", "מפלגה", "מפלגות",
        "ראש הממשלה", "נוזקה", "נוזקות", "כופרה", "וירוס מחשב", "לפרוץ", "פישינג"))

# --- arithmetic -------------------------------------------------------------------------------

MATH_REWRITES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), replacement) for pattern, replacement in (
        (rf"(?<=[{HEB}])-(?=\d)", " "),  # Hebrew prefix hyphen: ב-60, מ-1000
        (r"(?<!\w)multiplied\s+by(?!\w)", "*"), (r"(?<!\w)times(?!\w)", "*"),
        (r"(?<!\w)divided\s+by(?!\w)", "/"), (r"(?<!\w)plus(?!\w)", "+"), (r"(?<!\w)minus(?!\w)", "-"),
        (r"(?<!\w)to\s+the\s+power\s+of(?!\w)", "^"), (r"\s*(?<!\w)per\s*cent(?!\w)", "%"),
        (hebrew(("כפול",), prefixes=False), "*"), (hebrew(("חלקי",), prefixes=False), "/"),
        (hebrew(("ועוד",), prefixes=False), "+"), (hebrew(("פחות",), prefixes=False), "-"),
        (hebrew(("בחזקת",), prefixes=False), "^"), (r"\s*" + hebrew(("אחוז", "אחוזים"), prefixes=False), "%"),
        (r"(?<=\d)\s*[xX×·]\s*(?=[\d(])", " * "), ("÷", "/"), ("[−–]", "-"), ("[$€£₪¥]", ""),
        (r"%\s*(?:מתוך|מן|מ)\s*-?\s*(?=[\d(])", "% of "), (r"(?<=\d),(?=\d{3}(?!\d))", ""),
        (r"(?<!\w)square\s+root\s+of\s+(\d+(?:\.\d+)?)", r"sqrt(\1)"),
        (rf"(?<![{HEB}])ה?שורש(?:\s+ה?ריבועי)?\s+(?:של\s+|מ-?\s*)(\d+(?:\.\d+)?)", r"sqrt(\1)"),
    ))
MATH_FUNCTION = r"(?<![A-Za-z])(?:sqrt|abs)(?=\s*\()"  # the one-argument functions of calculateMath
MATH_RUN = re.compile(rf"(?:\d+(?:\.\d+)?|[-+*/^()%]|(?<![A-Za-z])of(?![A-Za-z])|{MATH_FUNCTION}|[ \t])+")
MATH_LEADING_JUNK = re.compile(r"^(?:\s|of(?![A-Za-z])|[+*/^%)])+")
MATH_TRAILING_JUNK = re.compile(r"(?:\s|(?<![A-Za-z])of|[-+*/^(])+$")
MATH_BINARY = re.compile(rf"[\d)%]\s*[-+*/^]\s*[-(\s]*\d|%\s*of\s*\(?\s*\d|{MATH_FUNCTION}\s*\(\s*\d")
# operations the rewrites above cannot express: a calculation beside one would answer another question
MATH_UNSUPPORTED = keywords(
    en=("log", "logarithm", "ln", "sin", "sine", "cos", "cosine", "tan", "tangent", "root", "squared", "cubed",
        "factorial", "average", "median", "half", "double", "twice", "triple", "quarter", "third"),
    he=("לוג", "לוגריתם", "שורש", "ממוצע", "חציון", "חצי", "פעמיים", "רבע", "שליש", "בריבוע", "בשלישית",
        "עצרת"))


# --- intents: what a clause asks for, and the steps that answer it ------------------------------

class Steps:
    """Collects plan steps under consecutive ids s1, s2, ..."""

    def __init__(self) -> None:
        self.steps: list[PlanStep] = []

    def add(self, tool: str, arguments: dict[str, Any], *depends_on: str) -> str:
        step_id = f"s{len(self.steps) + 1}"
        self.steps.append(PlanStep(id=step_id, tool=tool, arguments=arguments, depends_on=depends_on))
        return step_id

    def rates(self, sources: Iterable[str], target: str) -> dict[str, str]:
        """One independent getExchangeRate step per distinct source currency: code -> step id."""
        return {code: self.add("getExchangeRate", {"from": code, "to": target})
                for code in dict.fromkeys(sources) if code != target}


def ref(step_id: str) -> str:
    return "{{" + step_id + "}}"


@dataclass(frozen=True)
class Money:
    """An amount as written: `quantity` units at `value` each, or `percent`% of `value`."""

    value: str
    code: str
    quantity: str | None = None
    percent: str | None = None

    def term(self, rate: str | None = None) -> str:
        """The amount as a calculation, in another currency when `rate` names a rate step: 3 * 40 * {{s1}}."""
        factors = [self.quantity] if self.quantity not in (None, "1") else []
        factors.append(f"{self.percent}% of {self.value}" if self.percent else self.value)
        factors += [ref(rate)] if rate else []
        return " * ".join(factors)


@dataclass(frozen=True)
class MathIntent:
    position: int
    expression: str

    def emit(self, steps: Steps) -> None:
        steps.add("calculateMath", {"expression": self.expression})


@dataclass(frozen=True)
class RateIntent:
    position: int
    source: str
    target: str

    def emit(self, steps: Steps) -> None:
        steps.add("getExchangeRate", {"from": self.source, "to": self.target})


@dataclass(frozen=True)
class ConversionIntent:
    """Amounts to express in another currency: a rate per currency, then amount * rate each."""

    position: int
    amounts: tuple[Money, ...]
    target: str

    def emit(self, steps: Steps) -> None:
        rates = steps.rates((a.code for a in self.amounts), self.target)
        for amount in self.amounts:
            rate = rates[amount.code]
            steps.add("calculateMath", {"expression": amount.term(rate)}, rate)


@dataclass(frozen=True)
class SumIntent:
    """Amounts added and subtracted in `target`: a rate per other currency, then one calculation.
    A budget ("I have 500 shekels and two gadgets cost 40 dollars each") is the base minus each cost."""

    position: int
    terms: tuple[tuple[str, Money], ...]  # (operator before the amount, amount); the first has none
    target: str

    def emit(self, steps: Steps) -> None:
        rates = steps.rates((amount.code for _, amount in self.terms), self.target)
        expression = " ".join(f"{operator} {amount.term(rates.get(amount.code))}".strip()
                              for operator, amount in self.terms)
        steps.add("calculateMath", {"expression": expression}, *rates.values())


@dataclass(frozen=True)
class WeatherIntent:
    position: int
    city: str

    def emit(self, steps: Steps) -> None:
        steps.add("getWeather", {"city": self.city})


@dataclass(frozen=True)
class ProductIntent:
    """A catalogue question: retrieve passages, then answer from them."""

    position: int
    product: str
    question: str
    query: str

    def emit(self, steps: Steps) -> None:
        retrieval = steps.add("getProductInformation", {"query": self.query})
        steps.add("ragGeneration", {"question": self.question, "passages": {"$ref": retrieval}}, retrieval)


@dataclass(frozen=True)
class ReviewIntent:
    position: int
    text: str

    def emit(self, steps: Steps) -> None:
        steps.add("analyzeReview", {"review_text": self.text})


Intent = MathIntent | RateIntent | ConversionIntent | SumIntent | WeatherIntent | ProductIntent | ReviewIntent


# --- sendEmail: "send an email to X saying Y" (the tool waits for the user's approval) ----------

EMAIL_REQUEST = re.compile(
    r"^(?:please\s+)?(?:send|write)\s+(?:an?\s+)?e-?mail\s+to\s+(?P<to>[^\s,:]+)\s*,?\s*"
    r"(?:saying|that says|telling (?:him|her|them))\s*:?\s+(?P<body>.+?)\s*$", re.IGNORECASE)


def email_step(text: str) -> PlanStep | None:
    """The one sendEmail step a whole request to send an email asks for; its subject is the body's start."""
    match = EMAIL_REQUEST.match(text)
    if match is None:
        return None
    body = match.group("body").strip("\"'")
    subject = body if len(body) <= 60 else body[:57].rstrip() + "..."
    return PlanStep("s1", "sendEmail", {"to": match.group("to"), "subject": subject, "body": body})
