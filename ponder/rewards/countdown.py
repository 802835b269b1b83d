"""Safe parser and checker for Countdown equations (TinyZero-style task: reach a target with given numbers).

The expression is parsed with `ast.parse(mode="eval")` and walked; it is never passed to `eval`. Allowed:
non-negative decimal integer literals, binary + - * /, and parentheses. Everything else is rejected, including

- unary minus / plus: "-3" would let a policy conjure numbers it was not given (e.g. negate to cancel), so
  the game stays honest by allowing subtraction only between given numbers;
- `**`, `//`, `%`, names, calls, attributes, subscripts, floats, strings: the game is the four operations,
  and `**` also permits pathological work (`9**9**9`).

Arithmetic is exact (`fractions.Fraction`), so "(6 / 4) * 2 = 3" holds and no float rounding can pass a
wrong answer.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from fractions import Fraction

MAX_EXPRESSION_CHARS = 200

_OPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}
# Models often write the typographic signs; accept them as the ASCII operators they mean.
_SIGNS = str.maketrans({"×": "*", "÷": "/", "−": "-", "–": "-"})


class CountdownError(ValueError):
    """The text is not a valid countdown expression (syntax, forbidden construct, division by zero, ...)."""


def _left_side(equation: str) -> str:
    """ "expr" or "expr = target" -> "expr"; more than one "=" (including "==") is invalid."""
    parts = equation.split("=")
    if len(parts) > 2:
        raise CountdownError(f"at most one '=' allowed: {equation!r}")
    return parts[0]


def _walk(node: ast.AST, source: str, literals: list[int]) -> Fraction:
    """Exact value of `node`, appending every integer literal met to `literals`."""
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left = _walk(node.left, source, literals)
        right = _walk(node.right, source, literals)
        if isinstance(node.op, ast.Div) and right == 0:
            raise CountdownError("division by zero")
        return _OPS[type(node.op)](left, right)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        # Only plain decimal digits: "0x10" or "1_0" are ints to Python but not numbers a player writes.
        text = ast.get_source_segment(source, node) or ""
        if not text.isdigit():
            raise CountdownError(f"not a plain integer literal: {text!r}")
        literals.append(node.value)
        return Fraction(node.value)
    raise CountdownError(f"forbidden construct: {type(node).__name__}")


def parse_countdown(equation: str) -> tuple[Fraction, list[int]]:
    """(exact value, integer literals in order of appearance) of "expr" or "expr = target".

    Raises CountdownError for anything that is not + - * / over non-negative integer literals.
    """
    if len(equation) > MAX_EXPRESSION_CHARS:
        raise CountdownError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    source = _left_side(equation.translate(_SIGNS)).strip()
    if not source:
        raise CountdownError("empty expression")
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        raise CountdownError(f"cannot parse {source!r}: {err}") from None
    literals: list[int] = []
    return _walk(tree.body, source, literals), literals


def check_countdown(equation: str, numbers: Iterable[int], target: int | str | Fraction) -> bool:
    """True iff `equation` uses each of `numbers` exactly once (as a multiset) and equals `target` exactly."""
    try:
        value, literals = parse_countdown(equation)
    except CountdownError:
        return False
    if sorted(literals) != sorted(int(n) for n in numbers):
        return False
    return value == Fraction(str(target))
