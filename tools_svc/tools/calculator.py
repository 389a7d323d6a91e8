"""`calculator`: exact arithmetic on an expression parsed with `ast`, never `eval`.

Integers and decimals are exact (`0.1 + 0.2` is `0.3`): a literal becomes a
`Fraction` of its source text, and `+ - * / // % **` stay exact while both
sides are. Functions that are irrational in general (`sqrt(2)`, `sin`, `ln`)
give floats, and the answer says it is approximate. `^` means power, as on
a calculator. Sizes are bounded before they are computed: an exponent whose
result would exceed the digit limit is refused, so `9**9**9` costs nothing.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

from pydantic import Field

from common.errors import BadRequest
from tools_svc.registry import Tool, ToolArguments, ToolResult

__all__ = ["CalculatorTool", "evaluate", "format_number"]

Number = Fraction | float

MAX_RESULT_DIGITS = 4000
# Intermediate values may be larger than results (they can shrink again), within reason.
MAX_BITS = 2 * int(MAX_RESULT_DIGITS * math.log2(10))
MAX_NODES = 200
MAX_FACTORIAL = 2000
SIGNIFICANT_DIGITS = 30


class CalculatorArguments(ToolArguments):
    expression: str = Field(
        min_length=1,
        max_length=1000,
        description="An arithmetic expression, e.g. '(1.5 + 2) * 3^2 / 7' or 'sqrt(2) * pi'.",
    )


class CalcError(ValueError):
    """The expression cannot be evaluated; the message says why."""


def _exact_int(value: Number, what: str) -> int:
    if isinstance(value, Fraction) and value.denominator == 1:
        return value.numerator
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise CalcError(f"{what} needs an integer, got {format_number(value)[0]}")


def _check_size(value: Number) -> Number:
    if isinstance(value, Fraction):
        if max(value.numerator.bit_length(), value.denominator.bit_length()) > MAX_BITS:
            raise CalcError(f"a value has more than about {MAX_BITS * 3 // 10} digits")
    elif not math.isfinite(value):
        raise CalcError("the result is not a finite number")
    return value


def _power(base: Number, exponent: Number) -> Number:
    if isinstance(exponent, Fraction) and exponent.denominator == 1:
        n = exponent.numerator
        if isinstance(base, Fraction):
            if base == 0 and n < 0:
                raise CalcError("zero cannot be raised to a negative power")
            bits = max(base.numerator.bit_length(), base.denominator.bit_length())
            if abs(base) not in (0, 1) and abs(n) * max(bits - 1, 1) > MAX_BITS:
                raise CalcError(
                    f"the exponent {n} is too large: the result would have more than "
                    f"{MAX_RESULT_DIGITS} digits"
                )
            return base**n
    try:
        result: float | complex = float(base) ** float(exponent)
    except (OverflowError, ZeroDivisionError) as exc:
        raise CalcError(f"power out of range ({exc})") from None
    if isinstance(result, complex):
        raise CalcError("a negative number to a fractional power has no real value")
    return float(result)


def _sqrt(x: Number) -> Number:
    if x < 0:
        raise CalcError("sqrt of a negative number")
    if isinstance(x, Fraction):
        num, den = math.isqrt(x.numerator), math.isqrt(x.denominator)
        if num * num == x.numerator and den * den == x.denominator:
            return Fraction(num, den)
    return math.sqrt(x)


def _round(x: Number, digits: Number = Fraction(0)) -> Number:
    # Half away from zero, as people round; Python's round() rounds half to even.
    n = _exact_int(digits, "round's digits")
    if abs(n) > 100:
        raise CalcError("round's digits must be between -100 and 100")
    exact = Fraction(x) if isinstance(x, float) else x
    scale = Fraction(10) ** n
    sign = -1 if exact < 0 else 1
    return sign * Fraction(math.floor(abs(exact) * scale + Fraction(1, 2))) / scale


def _factorial(x: Number) -> Number:
    n = _exact_int(x, "factorial")
    if not 0 <= n <= MAX_FACTORIAL:
        raise CalcError(f"factorial takes 0 to {MAX_FACTORIAL}")
    return Fraction(math.factorial(n))


def _int_function(fn: Callable[..., int], name: str) -> Callable[..., Number]:
    def apply(*args: Number) -> Number:
        ints = [_exact_int(a, name) for a in args]
        if name in ("comb", "perm") and ints and ints[0] > 10_000:
            raise CalcError(f"{name} takes n up to 10000")
        return Fraction(fn(*ints))

    return apply


def _float_function(fn: Callable[..., float]) -> Callable[..., Number]:
    def apply(*args: Number) -> Number:
        try:
            return fn(*(float(a) for a in args))
        except (ValueError, OverflowError) as exc:
            raise CalcError(f"math error: {exc}") from None

    return apply


def _log(x: Number, base: Number | None = None) -> Number:
    if x <= 0 or (base is not None and (base <= 0 or base == 1)):
        raise CalcError("log needs a positive number (and a positive base other than 1)")
    return math.log(float(x)) if base is None else math.log(float(x), float(base))


def _exact_log(x: Number, base: int) -> Number:
    # log10(1000) is 3, not the float 2.9999999999999996 that math.log(x, 10) gives.
    if isinstance(x, Fraction) and x > 0:
        for value, sign in ((x, 1), (1 / x, -1)):
            if value.denominator == 1 and value.numerator > 1:
                n, k = value.numerator, 0
                while n % base == 0:
                    n, k = n // base, k + 1
                if n == 1:
                    return Fraction(sign * k)
    if x <= 0:
        raise CalcError("log needs a positive number")
    return math.log10(x) if base == 10 else math.log2(x)


FLOAT_FUNCTIONS = (
    *("exp", "cbrt", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh"),
    *("tanh", "asinh", "acosh", "atanh", "degrees", "radians", "hypot"),
)
FUNCTIONS: dict[str, Callable[..., Number]] = {
    "sqrt": _sqrt,
    "abs": lambda x: abs(x),
    "round": _round,
    "floor": lambda x: Fraction(math.floor(x)),
    "ceil": lambda x: Fraction(math.ceil(x)),
    "trunc": lambda x: Fraction(math.trunc(x)),
    "min": lambda *xs: min(xs),
    "max": lambda *xs: max(xs),
    "factorial": _factorial,
    "gcd": _int_function(math.gcd, "gcd"),
    "lcm": _int_function(math.lcm, "lcm"),
    "comb": _int_function(math.comb, "comb"),
    "perm": _int_function(math.perm, "perm"),
    "log": _log,
    "ln": _log,
    "log10": lambda x: _exact_log(x, 10),
    "log2": lambda x: _exact_log(x, 2),
    **{name: _float_function(getattr(math, name)) for name in FLOAT_FUNCTIONS},
}
CONSTANTS: dict[str, Number] = {"pi": math.pi, "e": math.e, "tau": math.tau}


class _Evaluator:
    def __init__(self, source: str) -> None:
        self.source = source

    def visit(self, node: ast.AST) -> Number:
        if isinstance(node, ast.Expression):
            return self.visit(node.body)
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = self.visit(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            return _check_size(self.binary(node))
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            raise CalcError(f"unknown name {node.id!r}; constants are {', '.join(CONSTANTS)}")
        if isinstance(node, ast.Call):
            return _check_size(self.call(node))
        raise CalcError(f"{type(node).__name__} is not allowed in an expression")

    def constant(self, node: ast.Constant) -> Number:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CalcError(f"only numbers are allowed, got {value!r}")
        if isinstance(value, int):
            return Fraction(value)
        # The source text, not the float: "0.1" is exactly one tenth.
        text = ast.get_source_segment(self.source, node) or repr(value)
        return Fraction(text.replace("_", ""))

    def binary(self, node: ast.BinOp) -> Number:
        left, right = self.visit(node.left), self.visit(node.right)
        op = node.op
        if isinstance(op, ast.Pow):
            return _power(left, right)
        if isinstance(op, ast.Add):
            return left + right
        if isinstance(op, ast.Sub):
            return left - right
        if isinstance(op, ast.Mult):
            return left * right
        if isinstance(op, ast.Div | ast.FloorDiv | ast.Mod):
            if right == 0:
                raise CalcError("division by zero")
            if isinstance(op, ast.Div):
                return left / right
            return Fraction(left // right) if isinstance(op, ast.FloorDiv) else left % right
        raise CalcError(f"operator {type(op).__name__} is not supported")

    def call(self, node: ast.Call) -> Number:
        if not isinstance(node.func, ast.Name):
            raise CalcError("only the named functions can be called")
        if node.func.id not in FUNCTIONS:
            known = ", ".join(FUNCTIONS)
            raise CalcError(f"unknown function {node.func.id!r}; functions are {known}")
        if node.keywords:
            raise CalcError("keyword arguments are not supported")
        args = [self.visit(arg) for arg in node.args]
        try:
            return FUNCTIONS[node.func.id](*args)
        except TypeError:
            raise CalcError(f"wrong number of arguments to {node.func.id}") from None


def evaluate(expression: str) -> Number:
    """Evaluate `expression`; raises `CalcError` (with the reason) when it cannot."""
    # `^` is power here; rewritten before parsing so that it also binds like `**`
    # (Python parses `^` as XOR, below `*`: `2 * 10^3` would be `(2 * 10) ^ 3`).
    source = expression.strip().replace("^", "**")
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, RecursionError) as exc:
        reason = getattr(exc, "msg", None) or str(exc) or "too deeply nested"
        raise CalcError(f"not a valid expression ({reason})") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise CalcError(f"the expression has more than {MAX_NODES} parts")
    return _Evaluator(source).visit(tree)


def _terminating_decimal(value: Fraction) -> str | None:
    den, twos, fives = value.denominator, 0, 0
    while den % 2 == 0:
        den, twos = den // 2, twos + 1
    while den % 5 == 0:
        den, fives = den // 5, fives + 1
    if den != 1:
        return None
    places = max(twos, fives)
    digits = str(abs(value.numerator) * 10**places // value.denominator).rjust(places + 1, "0")
    text = f"{digits[:-places]}.{digits[-places:]}".rstrip("0").rstrip(".")
    return ("-" if value < 0 else "") + text


def format_number(value: Number) -> tuple[str, bool]:
    """`value` as decimal text, and whether that text is exactly the value."""
    if isinstance(value, float):
        return repr(value), False
    if value.denominator == 1:
        if value.numerator.bit_length() > MAX_RESULT_DIGITS * 3.33:
            raise CalcError(f"the result has more than {MAX_RESULT_DIGITS} digits")
        text = str(value.numerator)
        if len(text.lstrip("-")) > MAX_RESULT_DIGITS:
            raise CalcError(f"the result has more than {MAX_RESULT_DIGITS} digits")
        return text, True
    exact = _terminating_decimal(value)
    if exact is not None and len(exact) <= MAX_RESULT_DIGITS:
        return exact, True
    with localcontext() as ctx:
        ctx.prec = SIGNIFICANT_DIGITS
        approx = Decimal(value.numerator) / Decimal(value.denominator)
    return format(approx, "f") if abs(approx.adjusted()) < 40 else str(approx), False


class CalculatorTool(Tool):
    name = "calculator"
    description = (
        "Exact arithmetic: integers and decimals with + - * / // % ** (or ^), parentheses, "
        "constants pi, e, tau and functions sqrt, abs, round, floor, ceil, trunc, min, max, "
        "factorial, gcd, lcm, comb, perm, exp, ln, log(x, base), log10, log2, sin, cos, tan, "
        "asin, acos, atan, atan2, sinh, cosh, tanh, degrees, radians, hypot, cbrt."
    )
    arguments = CalculatorArguments

    async def run(self, arguments: Any) -> ToolResult:
        args: CalculatorArguments = arguments
        try:
            value = evaluate(args.expression)
            text, exact = format_number(value)
        except (CalcError, OverflowError, ValueError) as exc:
            raise BadRequest(
                f"Cannot evaluate the expression: {exc}.",
                param="arguments.expression",
                code="invalid_expression",
            ) from None
        output: dict[str, Any] = {"expression": args.expression, "result": text, "exact": exact}
        if isinstance(value, Fraction) and not exact and value.denominator != 1:
            output["fraction"] = f"{value.numerator}/{value.denominator}"
        return ToolResult(output)
