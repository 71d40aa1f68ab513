"""calculateMath: the grammar, exactness, every error class and bound, and a seeded Fraction cross-check."""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction

import pytest

from agentlog.tools.math import calculate_math, evaluate
from agentlog.tools.registry import DEFAULT_REGISTRY, ToolError


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # numbers
        ("42", "42"),
        ("12.5", "12.5"),
        (".5", "0.5"),
        ("5.", "5"),
        ("1e3", "1000"),
        ("2.5E-4", "0.00025"),
        ("1e+2", "100"),
        ("  7 ", "7"),
        ("1,000", "1000"),
        ("1,000,000.25", "1000000.25"),
        ("12,345 + 1", "12346"),
        ("(1,000) * 2", "2000"),
        ("10% of (1,000)", "100"),
        ("max(1,000)", "1"),  # inside a call a comma separates arguments
        ("max(1,000, 5)", "5"),
        # precedence and associativity
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("(48 + 12) / 4 * 3", "45"),
        ("10 - 4 - 3", "3"),
        ("64 / 4 / 2", "8"),
        ("2 ^ 3 ^ 2", "512"),
        ("2 ** 3 ** 2", "512"),
        ("(2 ^ 3) ^ 2", "64"),
        ("2 * 3 ^ 2", "18"),
        ("-2 ^ 2", "-4"),
        ("(-2) ^ 2", "4"),
        ("-2 ^ 3", "-8"),
        ("2 ^ -2", "0.25"),
        ("2 ^ -1 ^ 2", "0.5"),
        ("- -3", "3"),
        ("--3", "3"),
        ("+-+3", "-3"),
        ("3 - -3", "6"),
        ("3 * -2", "-6"),
        ("0 ^ 0", "1"),
        ("0 ^ 5", "0"),
        ("-0", "0"),
        ("1 - 1", "0"),
        ("2 ^ 100 / 2 ^ 99", "2"),
        ("2 ^ 300 / 2 ^ 299", None),  # 2^300 has 91 digits: rounded to 50, so only close to 2
        ("1.5 ^ 2", "2.25"),
        ("2 ^ 4.0", "16"),
        # exact decimals
        ("0.1 + 0.2", "0.3"),
        ("0.1 * 3", "0.3"),
        ("1 / 4", "0.25"),
        ("1 / 3 * 3", "0.99999999999999999999999999999999999999999999999999"),
        ("1.10 + 2.20", "3.3"),
        # percentages
        ("12.5%", "0.125"),
        ("12.5% of 240", "30"),
        ("12.5 % of 240", "30"),
        ("50% of -20", "-10"),
        ("-50%", "-0.5"),
        ("2 + 10% of 50", "7"),
        ("10% of 50 * 2", "10"),
        ("200 * 15%", "30"),
        ("100 + 10%", "100.1"),
        ("(5 + 5)% of 30", "3"),
        ("10% of 20% of 1000", "20"),
        ("12.5%OF240", "30"),
        # unicode operators
        ("6 × 7", "42"),
        ("84 ÷ 2", "42"),
        ("50 − 8", "42"),
        ("−8", "-8"),
        ("3 × 4 ÷ 2 − 1", "5"),
        # functions
        ("sqrt(16)", "4"),
        ("sqrt(2.25)", "1.5"),
        ("sqrt(0)", "0"),
        ("SQRT(9)", "3"),
        ("Sqrt(3 ^ 2 + 4 ^ 2)", "5"),
        ("abs(-3.5)", "3.5"),
        ("abs(2 - 5) * 2", "6"),
        ("round(2.5)", "3"),
        ("round(-2.5)", "-3"),
        ("round(2.4)", "2"),
        ("round(3.14159, 2)", "3.14"),
        ("round(1234.5678, -2)", "1200"),
        ("round(1 / 3, 5)", "0.33333"),
        ("round(7, 3)", "7"),
        ("round(1e99, 5)", "1" + "0" * 99),
        ("round(-0.4)", "0"),
        ("min(3, 1, 2)", "1"),
        ("max(3, 1, 2)", "3"),
        ("max(-1)", "-1"),
        ("min(1 + 1, 3) * max(2, 4)", "8"),
        ("sqrt(abs(-16)) + round(max(1.5, 0.5))", "6"),
        ("-sqrt(4) ^ 2", "-4"),
        # bounds that are still allowed
        ("10 ^ 100", "1" + "0" * 100),
        ("1e100", "1" + "0" * 100),
        ("1e-100", "0." + "0" * 99 + "1"),
        ("1.0001 ^ 1000", None),
        ("2 ^ -332", None),
    ],
)
def test_evaluates(expression: str, expected: str | None) -> None:
    result = evaluate(expression)
    assert isinstance(result, Decimal)
    if expected is not None:
        assert calculate_math(expression).data["exact"] == expected


def test_right_associative_power_and_conventional_unary_minus_agree_with_python() -> None:
    assert evaluate("2^3^2") == 2**3**2
    assert evaluate("-2^2") == -(2**2)
    assert evaluate("-3^-2^2") == evaluate("-(3^(-(2^2)))") == evaluate("-1/81")


def test_tool_output_shapes() -> None:
    out = calculate_math("12.5% of 240")
    assert out.value == 30 and isinstance(out.value, int)
    assert out.text == "30"
    assert out.data == {"expression": "12.5% of 240", "exact": "30"}

    out = calculate_math("0.1+0.2")
    assert out.value == 0.3 and isinstance(out.value, float)
    assert out.text == "0.3"

    out = calculate_math("(48 + 12) / 4 * 3")
    assert out.value == 45 and out.text == "45"

    out = calculate_math("1/3")
    assert out.text == "0.33333333333333333333"  # 20 significant digits for display
    assert out.data["exact"] == "0." + "3" * 50  # full precision kept
    assert out.value == pytest.approx(1 / 3)

    out = calculate_math("2/3")
    assert out.text == "0.66666666666666666667"

    out = calculate_math("sqrt(2) ^ 2")
    assert out.text == "2"
    assert out.data["exact"].startswith("1.99999")

    out = calculate_math("-2.50")
    assert out.value == -2.5 and out.text == "-2.5"

    out = calculate_math("0 * -1")
    assert out.value == 0 and out.text == "0" and out.data["exact"] == "0"


def test_big_integers_become_floats_so_json_encoders_cope() -> None:
    assert calculate_math("2^62").value == 2**62
    big = calculate_math("2^64")
    assert isinstance(big.value, float) and big.value == 2.0**64
    assert big.data["exact"] == str(2**64)
    assert "E" not in calculate_math("1e100").text and "e" not in calculate_math("1e-100").text


def test_registered_with_schema() -> None:
    spec = DEFAULT_REGISTRY.get("calculateMath")
    assert spec is not None and spec.function is calculate_math
    assert spec.parameters["required"] == ["expression"]
    assert spec.parameters["properties"]["expression"]["type"] == "string"
    assert "12.5% of 240" in spec.description


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        # syntax, with positions (1-based)
        ("(1+2))", "unexpected ')' at position 6"),
        ("1 +", "unexpected end of expression at position 4"),
        ("(1+2", "missing ')' for the '(' at position 1"),
        ("sqrt(4", "missing ')' for the '(' at position 5"),
        ("*3", "unexpected '*' at position 1"),
        ("2(3)", "unexpected '(' at position 2"),
        ("1.2.3", "unexpected '.3' at position 4"),
        ("()", "unexpected ')' at position 2"),
        ("min()", "unexpected ')' at position 5"),
        ("max(1,,2)", "unexpected ',' at position 7"),
        ("1, 2", "malformed thousands separator in the number at position 1"),
        (".", "unexpected '.' at position 1"),
        ("1 $ 2", "unexpected character '$' at position 3"),
        ("2 = 2", "unexpected character '=' at position 3"),
        ("__import__('os')", "unexpected character '_' at position 1"),
        ("sqrt 4", "expected '(' after 'sqrt' at position 6"),
        ("pi * 2", "unknown name 'pi' at position 1"),
        ("foo(1)", "unknown name 'foo' at position 1 (functions: abs, max, min, round, sqrt)"),
        ("10 of 50", "'of' at position 4 must follow a percentage"),
        ("10 % 3", "unexpected '3' at position 6: '%' means percent, not modulo"),
        ("10% (3)", "unexpected '(' at position 5: '%' means percent"),
        ("10%%", "unexpected '%' at position 4"),
        ("", "empty expression"),
        ("   ", "empty expression"),
        # thousands separators
        ("12,5", "malformed thousands separator in the number at position 1"),
        ("1,00", "malformed thousands separator"),
        ("1,0000", "malformed thousands separator"),
        ("1234,567", "malformed thousands separator"),
        ("0,123", "malformed thousands separator"),
        ("1,000,00", "malformed thousands separator"),
        # arithmetic
        ("1 / 0", "division by zero at position 3"),
        ("1 / (2 - 2)", "division by zero at position 3"),
        ("5 ÷ 0", "division by zero at position 3"),
        ("0 ^ -1", "division by zero: 0 raised to a negative power at position 3"),
        ("sqrt(-4)", "sqrt of a negative number (-4) at position 1"),
        ("2 ^ 0.5", "exponent must be an integer, got 0.5 (at position 3)"),
        ("round(1, 0.5)", "round's digit count must be an integer, got 0.5"),
        ("round(1, 2000)", "round's digit count 2000 is too large (limit 1000)"),
        ("sqrt(1, 2)", "sqrt takes 1 argument, got 2"),
        ("abs(1, 2)", "abs takes 1 argument, got 2"),
        ("round(1, 2, 3)", "round takes 1 or 2 arguments, got 3"),
        # bounds
        ("2 ^ 100000", "exponent 100000 is too large (limit 1000) at position 3"),
        ("2 ^ -1001", "exponent -1001 is too large (limit 1000)"),
        ("10 ^ 101", "result at position 4 exceeds the magnitude limit 1e100"),
        ("1e100 * 10", "result at position 7 exceeds the magnitude limit 1e100"),
        ("1e101", "number at position 1 exceeds the magnitude limit 1e100"),
        ("1e999999999", "number at position 1 exceeds the magnitude limit 1e100"),
        ("2 + 1e99999999999999999999", "number at position 5 is out of range"),
        ("1e-99999999999999999999", "number at position 1 is out of range"),
        ("1e-101", "number at position 1 is below the smallest nonzero magnitude 1e-100"),
        ("1e-60 * 1e-60", "result at position 7 is below the smallest nonzero magnitude"),
        ("1e-99%", "result at position 6 is below the smallest nonzero magnitude"),
        ("10 ^ 1000", "exceeds the magnitude limit"),
        ("9 ^ 9 ^ 9", "exponent 387420489 is too large (limit 1000)"),
    ],
)
def test_errors(expression: str, message: str) -> None:
    with pytest.raises(ToolError) as caught:
        evaluate(expression)
    assert message in caught.value.message
    assert caught.value.error_type == "MathError"
    assert caught.value.retryable is False
    assert caught.value.to_json()["type"] == "MathError"


def test_tool_raises_the_same_error() -> None:
    with pytest.raises(ToolError, match="division by zero"):
        calculate_math("1/0")


def test_length_bound() -> None:
    ok = "1" + "+1" * 499  # 999 characters
    assert evaluate(ok) == 500
    assert evaluate(ok + " ") == 500
    with pytest.raises(ToolError, match=r"expression is 1001 characters long \(limit 1000\)"):
        evaluate(ok + "+1")


def test_nesting_depth_bound() -> None:
    assert evaluate("(" * 100 + "7" + ")" * 100) == 7
    with pytest.raises(ToolError, match=r"nested too deeply at position 101 \(limit 100 levels\)"):
        evaluate("(" * 101 + "7" + ")" * 101)
    assert evaluate("abs(" * 100 + "-7" + ")" * 100) == 7
    with pytest.raises(ToolError, match="nested too deeply"):
        evaluate("abs(" * 101 + "-7" + ")" * 101)
    assert evaluate("1^" * 100 + "1") == 1
    with pytest.raises(ToolError, match="nested too deeply"):
        evaluate("1^" * 101 + "1")
    with pytest.raises(ToolError, match="nested too deeply"):
        evaluate("(1^" * 51 + "1" + ")" * 51)
    # signs are read in a loop, so a long run of them is fine and cannot exhaust the stack
    assert evaluate("-" * 999 + "1") == -1


def test_exponent_bound_edges() -> None:
    assert evaluate("1 ^ 1000") == 1
    assert evaluate("(-1) ^ 1000") == 1
    assert evaluate("(-1) ^ -999") == -1
    with pytest.raises(ToolError, match="exponent 1001 is too large"):
        evaluate("1 ^ 1001")


def _random_expression(rng: random.Random, depth: int) -> tuple[str, Fraction]:
    """A random +-*/ expression (small integers and one-decimal numbers) with its exact Fraction value."""
    if depth == 0 or rng.random() < 0.3:
        if rng.random() < 0.25:
            tenths = rng.randint(1, 99)
            return f"{tenths // 10}.{tenths % 10}", Fraction(tenths, 10)
        n = rng.randint(0, 12)
        return str(n), Fraction(n)
    if rng.random() < 0.1:
        text, value = _random_expression(rng, depth - 1)
        return f"-({text})", -value
    left_text, left = _random_expression(rng, depth - 1)
    right_text, right = _random_expression(rng, depth - 1)
    op = rng.choice("+-*/")
    if op == "/" and right == 0:
        op = "+"
    value = {"+": left + right, "-": left - right, "*": left * right}[op] if op != "/" else left / right
    spelled = rng.choice({"+": ["+"], "-": ["-", "−"], "*": ["*", "×"], "/": ["/", "÷"]}[op])
    return f"({left_text} {spelled} {right_text})", value


def test_randomized_against_fractions() -> None:
    rng = random.Random(20240607)
    checked = exact = 0
    while checked < 300:
        text, expected = _random_expression(rng, rng.randint(1, 5))
        if "/" not in text and "÷" not in text:
            assert evaluate(text) == Decimal(expected.numerator) / expected.denominator, text
            exact += 1
        else:
            got = Fraction(evaluate(text))
            # 50-digit rounding at each division: allow a tiny error relative to the magnitude
            assert abs(got - expected) <= Fraction(1, 10**40) * max(Fraction(1), abs(expected)), text
        checked += 1
    assert exact > 50  # the exact-equality branch really ran
