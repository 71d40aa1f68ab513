"""The calculateMath tool: exact decimal arithmetic over a small, hand-parsed expression language.

Language models are poor at arithmetic and expressions come from them, so this never hands the text to
Python's eval: a tokenizer and a recursive-descent parser accept only the grammar below, every size is
bounded (so a hostile expression cannot burn CPU or memory), and numbers are `decimal.Decimal` with 50
significant digits so that 0.1 + 0.2 is exactly 0.3.

Grammar, loosest binding first:

    expr    := term (('+' | '-') term)*
    term    := signed (('*' | '/' | 'of') signed)*    'of' only right after '%': X% of Y = X/100*Y
    signed  := ('+' | '-')* power                     so -2^2 = -(2^2) = -4, the usual convention
    power   := postfix (('^' | '**') signed)?         right-associative: 2^3^2 = 2^9
    postfix := primary '%'?                           12.5% = 0.125; '%' is never modulo
    primary := number | '(' expr ')' | name '(' expr (',' expr)* ')'

Numbers: `12`, `12.5`, `.5`, `5.`, `1e3`, `2.5E-4`. Thousands separators (`1,000,000.5`) are accepted only
outside function calls, where a comma has no other meaning, and only in the strict form: a first group
of 1-3 digits not starting with 0, then groups of exactly three digits. Anything else with a comma
outside a call ('12,5', '1,00') is rejected rather than guessed at. Inside a call a comma always
separates arguments: max(1,000) is max(1, 0). `×`, `÷` and `−` (U+2212) mean `*`, `/` and `-`; names are
case-insensitive. Functions: sqrt(x), abs(x), round(x[, n]) (halves away from zero; n may be negative),
min(...), max(...). 0^0 is 1. Positions in error messages are 1-based character offsets into the text.
Bounds: 1000 characters, 100 levels of parentheses/powers, integer exponents with |n| <= 1000, and every
literal and intermediate result within 1e100 in magnitude.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext

from agentlog.tools.registry import ToolError, ToolOutput, tool

MAX_LENGTH = 1000
MAX_DEPTH = 100
MAX_EXPONENT = 1000
MAX_MAGNITUDE = Decimal("1e100")
MIN_MAGNITUDE = Decimal("1e-100")  # smallest nonzero magnitude, so the plain-text result stays short
PRECISION = 50
DISPLAY_DIGITS = 20

# Overflow cannot happen within the bounds (at most 1e100 ** 1000); trapping it is the backstop.
_CONTEXT = decimal.Context(prec=PRECISION, Emax=999_999, Emin=-999_999,
                           traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow])
_DIGITS = "0123456789"
_ALIASES = {"×": "*", "÷": "/", "−": "-"}
_OPERATORS = "+-*/^%(),"
_NUMBER = re.compile(r"(?=\.?[0-9])[0-9]*\.?[0-9]*(?:[eE][+-]?[0-9]+)?")
_NAME = re.compile(r"[A-Za-z]+")
_GROUPED = re.compile(r"[1-9][0-9]{0,2}(?:,[0-9]{3})+(?![0-9,])(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?")


def _error(message: str) -> ToolError:
    return ToolError(message, retryable=False, error_type="MathError")


@dataclass(frozen=True)
class _Token:
    kind: str  # "num", "name", "end", or the operator character itself ('**' becomes '^')
    text: str
    pos: int  # 1-based
    value: Decimal | None = None


def _scan_number(text: str, i: int, in_call: bool) -> tuple[str, int]:
    """Read the number at index i; returns its text without separators and the index after it."""
    match = _NUMBER.match(text, i)
    if match is None:
        raise _error(f"unexpected {text[i]!r} at position {i + 1}")
    if text[match.end() : match.end() + 1] == "," and match.group().isdigit() and not in_call:
        match = _GROUPED.match(text, i)
        if match is None:
            raise _error(f"malformed thousands separator in the number at position {i + 1} "
                         "(write e.g. 1,000,000 or 1000000)")
    return match.group().replace(",", ""), match.end()


def _tokenize(text: str) -> list[_Token]:
    """Split into tokens; tracks which parentheses belong to calls so commas there separate arguments."""
    tokens: list[_Token] = []
    calls: list[bool] = []  # one entry per open '(': does it open a function call?
    i = 0
    while i < len(text):
        c = _ALIASES.get(text[i], text[i])
        if c.isspace():
            i += 1
        elif c in _DIGITS or c == ".":
            literal, end = _scan_number(text, i, any(calls))
            try:
                value = _check(Decimal(literal), i + 1, "number")
            except decimal.InvalidOperation:  # an exponent beyond what Decimal can even represent
                raise _error(f"number at position {i + 1} is out of range") from None
            tokens.append(_Token("num", text[i:end], i + 1, value))
            i = end
        elif (name := _NAME.match(text, i)) is not None:
            tokens.append(_Token("name", name.group().lower(), i + 1))
            i = name.end()
        elif text[i : i + 2] == "**":
            tokens.append(_Token("^", "**", i + 1))
            i += 2
        elif c in _OPERATORS:
            if c == "(":
                calls.append(bool(tokens) and tokens[-1].kind == "name" and tokens[-1].text != "of")
            elif c == ")" and calls:
                calls.pop()
            tokens.append(_Token(c, text[i], i + 1))
            i += 1
        else:
            raise _error(f"unexpected character {text[i]!r} at position {i + 1}")
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


def _check(value: Decimal, pos: int, what: str = "result") -> Decimal:
    """Bound magnitudes both ways: nothing huge to compute with, nothing tiny to print as 0.000...0001."""
    size = value.copy_abs()
    if size > MAX_MAGNITUDE:
        raise _error(f"{what} at position {pos} exceeds the magnitude limit 1e100")
    if size and size < MIN_MAGNITUDE:
        raise _error(f"{what} at position {pos} is below the smallest nonzero magnitude 1e-100")
    return +value  # rounds literals to the working precision


def _integer(value: Decimal, what: str, pos: int) -> int:
    if value != value.to_integral_value():
        raise _error(f"{what} must be an integer, got {_plain(value)} (at position {pos})")
    return int(value)


def _sqrt(args: list[Decimal], pos: int) -> Decimal:
    if args[0] < 0:
        raise _error(f"sqrt of a negative number ({_plain(args[0])}) at position {pos}")
    return args[0].sqrt()


def _round(args: list[Decimal], pos: int) -> Decimal:
    x = args[0]
    places = _integer(args[1], "round's digit count", pos) if len(args) == 2 else 0
    if abs(places) > MAX_EXPONENT:
        raise _error(f"round's digit count {places} is too large (limit {MAX_EXPONENT})")
    exponent = x.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= -places:
        return x  # already no finer than asked: quantize could only fail on precision here
    return x.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


# name -> (most arguments, or 0 for any number; the grammar guarantees at least one), implementation
_FUNCTIONS: dict[str, tuple[int, Callable[[list[Decimal], int], Decimal]]] = {
    "sqrt": (1, _sqrt),
    "abs": (1, lambda args, _pos: abs(args[0])),
    "round": (2, _round),
    "min": (0, lambda args, _pos: min(args)),
    "max": (0, lambda args, _pos: max(args)),
}


class _Parser:
    """Recursive descent that evaluates as it parses; one method per grammar rule in the module doc."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def unexpected(self, token: _Token | None = None) -> ToolError:
        token = token or self.tok
        if token.kind == "end":
            return _error(f"unexpected end of expression at position {token.pos}")
        return _error(f"unexpected {token.text!r} at position {token.pos}")

    def enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _error(f"expression nested too deeply at position {pos} (limit {MAX_DEPTH} levels)")

    def expr(self) -> Decimal:
        value = self.term()
        while self.tok.kind in ("+", "-"):
            op = self.advance()
            right = self.term()
            value = _check(value + right if op.kind == "+" else value - right, op.pos)
        return value

    def term(self) -> Decimal:
        value = self.signed()
        while self.tok.kind in ("*", "/") or (self.tok.kind == "name" and self.tok.text == "of"):
            op = self.advance()
            if op.kind == "name" and self.tokens[self.i - 2].kind != "%":
                raise _error(f"'of' at position {op.pos} must follow a percentage, as in '10% of 50'")
            right = self.signed()
            if op.kind == "/":
                if right == 0:
                    raise _error(f"division by zero at position {op.pos}")
                value = _check(value / right, op.pos)
            else:
                value = _check(value * right, op.pos)
        return value

    def signed(self) -> Decimal:
        negate = False
        while self.tok.kind in ("+", "-"):
            negate ^= self.advance().kind == "-"
        value = self.power()
        return -value if negate else value

    def power(self) -> Decimal:
        base = self.postfix()
        if self.tok.kind != "^":
            return base
        op = self.advance()
        self.enter(op.pos)
        exponent = self.signed()
        self.depth -= 1
        n = _integer(exponent, "exponent", op.pos)
        if abs(n) > MAX_EXPONENT:
            raise _error(f"exponent {n} is too large (limit {MAX_EXPONENT}) at position {op.pos}")
        if base == 0:
            if n < 0:
                raise _error(f"division by zero: 0 raised to a negative power at position {op.pos}")
            return Decimal(1) if n == 0 else Decimal(0)
        return _check(base**n, op.pos)

    def postfix(self) -> Decimal:
        value = self.primary()
        if self.tok.kind == "%":
            value = _check(value / 100, self.advance().pos)
            if self.tok.kind in ("num", "(") or (self.tok.kind == "name" and self.tok.text != "of"):
                raise _error(f"unexpected {self.tok.text!r} at position {self.tok.pos}: '%' means percent, "
                             "not modulo (write '10% of 50' for a percentage of a number)")
        return value

    def primary(self) -> Decimal:
        token = self.advance()
        if token.kind == "num" and token.value is not None:
            return token.value
        if token.kind == "(":
            self.enter(token.pos)
            value = self.expr()
            self.close(token)
            return value
        if token.kind == "name":
            return self.call(token)
        raise self.unexpected(token)

    def close(self, opening: _Token) -> None:
        if self.tok.kind != ")":
            if self.tok.kind == "end":
                raise _error(f"missing ')' for the '(' at position {opening.pos}")
            raise self.unexpected()
        self.advance()
        self.depth -= 1

    def call(self, name: _Token) -> Decimal:
        if name.text not in _FUNCTIONS:
            known = ", ".join(sorted(_FUNCTIONS))
            raise _error(f"unknown name {name.text!r} at position {name.pos} (functions: {known})")
        if self.tok.kind != "(":
            raise _error(f"expected '(' after {name.text!r} at position {self.tok.pos}")
        opening = self.advance()
        self.enter(opening.pos)
        args = [self.expr()]
        while self.tok.kind == ",":
            self.advance()
            args.append(self.expr())
        self.close(opening)
        most, function = _FUNCTIONS[name.text]
        if most and len(args) > most:
            expected = "1 argument" if most == 1 else f"1 or {most} arguments"
            raise _error(f"{name.text} takes {expected}, got {len(args)} (at position {name.pos})")
        return _check(function(args, name.pos), name.pos)


def evaluate(expression: str) -> Decimal:
    """Evaluate `expression` exactly (to 50 significant digits); raises ToolError(error_type="MathError")."""
    if len(expression) > MAX_LENGTH:
        raise _error(f"expression is {len(expression)} characters long (limit {MAX_LENGTH})")
    if not expression.strip():
        raise _error("empty expression")
    with localcontext(_CONTEXT):
        try:
            parser = _Parser(_tokenize(expression))
            value = parser.expr()
            if parser.tok.kind != "end":
                raise parser.unexpected()
        except decimal.DecimalException as exc:  # the bounds above should fire first: a backstop
            raise _error(f"arithmetic error: {type(exc).__name__}") from None
        return Decimal(0) if value.is_zero() else value  # no -0 or 0E-7


def _plain(value: Decimal, digits: int = PRECISION) -> str:
    """Positional notation without exponent or trailing zeros, rounded to `digits` significant digits."""
    with localcontext(_CONTEXT) as ctx:
        ctx.prec, ctx.rounding = digits, ROUND_HALF_UP
        value = (+value).normalize()
    return "0" if value.is_zero() else format(value, "f")


@tool("calculateMath", "Evaluate an arithmetic expression exactly (decimal): + - * / ^, parentheses, "
      "percentages like '12.5% of 240', sqrt/abs/round/min/max.", local=True)
def calculate_math(expression: str) -> ToolOutput:
    """JSON value is an int when integral and within 64 bits (what orjson can encode), otherwise a float;
    `data.exact` keeps the full-precision text for anyone who needs more than a float holds."""
    result = evaluate(expression)
    exact = _plain(result)
    if result == result.to_integral_value() and abs(result) < 2**63:
        value: int | float = int(result)
    else:
        value = float(exact)
    return ToolOutput(value=value, text=_plain(result, DISPLAY_DIGITS), data={"expression": expression,
                                                                            "exact": exact})
