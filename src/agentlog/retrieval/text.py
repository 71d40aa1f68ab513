"""Tokens for BM25 and sentence scoring, and the Hebrew-to-English expansion of questions.

The documents are English and questions arrive in English or Hebrew ("כמה זמן לוקח לטעון את VoltRider
E2 מ-10% ל-80%?"). A Hebrew question shares only product names and numbers with the documents, so
`expand` appends the English words for the Hebrew topic words it knows (charging, battery, warranty,
...); a one- to three-letter prefix (ו ב ל מ ה ש כ) is stripped when the bare word is in the glossary.
Stemming is a light suffix strip (charge/charging/charged -> charg), enough for a small corpus.
"""

from __future__ import annotations

import re


def _words(text: str) -> list[str]:
    """A word list written as one string: long lexicons stay readable."""
    return text.split()

WORD = re.compile(r"[0-9]+(?:[.,][0-9]+)?|[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)
STOPWORDS = frozenset(_words("""a an and are as at be but by can could do does did for from has have how i if in into
is it its me my of on or our so than that the their them then there these they this to up us was we what
when where which while who why will with would you your about should any all also just more most much
some such very"""))
HEBREW_PREFIXES = "ובלמהשכ"
SUFFIXES = ("ing", "ed", "es", "s")

# Hebrew topic word -> English words used in the documents
GLOSSARY: dict[str, str] = {
    "טעינה": "charge charging charger", "לטעון": "charge charging", "טוען": "charger charging",
    "מטען": "charger", "טעינת": "charging", "סוללה": "battery", "הסוללה": "battery", "סוללת": "battery",
    "אחריות": "warranty", "מחיר": "price", "עולה": "price cost", "משקל": "weight", "שוקל": "weight",
    "מסך": "screen display", "מצלמה": "camera", "טווח": "range", "מהירות": "speed", "מהירה": "fast speed",
    "מהיר": "fast speed", "זמן": "time hours minutes", "חומרים": "materials filaments",
    "חומר": "material filament", "פילמנט": "filament", "פילמנטים": "filaments", "נפח": "volume",
    "הדפסה": "print printing", "מדפסת": "printer", "להדפיס": "print", "קפה": "coffee", "מים": "water",
    "מיכל": "tank", "ניקוי": "cleaning descaling", "אבנית": "descaling scale", "חלב": "milk",
    "לחץ": "pressure", "בלמים": "brakes", "בלם": "brake", "צמיגים": "tires", "צמיג": "tire",
    "עמידות": "water resistance rating", "מתחמם": "heat hot overheating", "חום": "heat temperature",
    "תקלה": "problem troubleshooting error", "בעיה": "problem troubleshooting", "שגיאה": "error",
    "ממדים": "dimensions", "גודל": "size dimensions", "זיכרון": "memory storage ram", "אחסון": "storage",
    "מעבד": "processor chip", "אלחוטית": "wireless", "רעש": "noise", "ספלים": "cups", "כוס": "cup",
    "מקסימלית": "maximum top", "מקסימלי": "maximum", "קילומטרים": "km range", "ק\"מ": "km",
    "שעות": "hours", "דקות": "minutes", "עמיד": "resistant",
}
_GLOSSARY_KEYS = frozenset(GLOSSARY)


def _stem(word: str) -> str:
    if not word.isascii():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"  # batteries -> battery
    for suffix in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 4 else word  # descale/descaling -> descal


def tokens(text: str) -> list[str]:
    """Lowercased, stopword-free, lightly stemmed words and numbers ("10%" gives "10")."""
    return [_stem(w) for w in (m.group(0).lower() for m in WORD.finditer(text)) if w not in STOPWORDS]


def _gloss(word: str) -> str | None:
    for cut in range(min(4, len(word))):
        if cut and word[cut - 1] not in HEBREW_PREFIXES:
            break
        bare = word[cut:]
        if bare in _GLOSSARY_KEYS:
            return GLOSSARY[bare]
    return None


def expand(question: str) -> str:
    """The question plus English words for the Hebrew topic words in it (unchanged if none)."""
    extra = [g for w in WORD.findall(question) if not w.isascii() and (g := _gloss(w))]
    return f"{question} {' '.join(extra)}" if extra else question
