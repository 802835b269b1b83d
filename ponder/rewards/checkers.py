"""Answer checkers: `CHECKERS[name](answer, ref) -> bool`, picked per item by `Reference.checker`.

The task owns the check and the RL reward reuses it, so evaluation and training agree (nanochat's Task
design). "numeric" and "exact" cover generated tasks and GSM8K; "countdown" validates an equation. The
registry stays open: symbolic math equivalence (math-verify) and code execution checkers register here later.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction

from ponder.registry import Registry
from ponder.rewards.base import Reference
from ponder.rewards.countdown import check_countdown

CheckerFn = Callable[[str, Reference], bool]

CHECKERS = Registry("checker")
register_checker = CHECKERS.register

RELATIVE_TOLERANCE = 1e-6


def get_checker(name: str) -> CheckerFn:
    """The checker registered as `name`; unknown names raise ValueError listing the choices."""
    return CHECKERS[name]


def normalize_text(text: str) -> str:
    """Strip, drop surrounding `$...$` and a trailing period, lowercase, collapse whitespace."""
    text = text.strip()
    if len(text) >= 2 and text.startswith("$") and text.endswith("$"):
        text = text.strip("$").strip()
    text = text.rstrip(".").strip()
    return " ".join(text.lower().split())


_FRAC = re.compile(r"^(-?)\\[dt]?frac\{(-?\d+)\}\{(-?\d+)\}$")
_VARIABLE_PREFIX = re.compile(r"^[a-zA-Z]\s*=\s*")  # "x = 5" answers the linear task
_UNIT_SUFFIX = re.compile(r"\s*[a-zA-Z][a-zA-Z .]*$")  # "5 dollars", "12 cm" (words only, no digits)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def parse_number(text: str) -> Fraction | None:
    """Exact value of a numeric answer, or None if it is not one.

    Accepts ints, decimals, "3/4", `\\frac{3}{4}`, thousands separators ("1,234"), a leading "$", a trailing
    "%" (50% reads as 50, matching answers written either way in GSM8K-style data), a leading "x =", and
    trailing unit words ("dollars").
    """
    text = normalize_text(text)
    text = text.replace("\\$", "$").replace("\\%", "%").replace("\\!", "")
    text = _VARIABLE_PREFIX.sub("", text)
    text = _UNIT_SUFFIX.sub("", text) if re.search(r"\d", text) else text
    text = text.strip().removesuffix("%").strip()
    sign = ""
    if text.startswith("-"):
        sign, text = "-", text[1:].lstrip()
    text = text.removeprefix("$").strip()
    text = _THOUSANDS.sub("", text)
    frac = _FRAC.match(text)
    if frac:
        text = f"{frac.group(1)}{frac.group(2)}/{frac.group(3)}"
    if not re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)(/-?\d+)?|-?\d+(\.\d+)?e-?\d+", text):
        return None
    try:
        return Fraction(sign + text)
    except (ValueError, ZeroDivisionError):
        return None


def numbers_close(a: Fraction, b: Fraction, rel_tol: float = RELATIVE_TOLERANCE) -> bool:
    """|a - b| <= rel_tol * max(|a|, |b|) (exact equality needed at zero)."""
    return abs(a - b) <= Fraction(rel_tol) * max(abs(a), abs(b))


@register_checker("numeric")
def numeric(answer: str, ref: Reference) -> bool:
    """Numbers equal within 1e-6 relative; if either side is not a number, normalised text equality."""
    got, want = parse_number(answer), parse_number(ref.answer)
    if got is not None and want is not None:
        return numbers_close(got, want)
    return normalize_text(answer) == normalize_text(ref.answer)


@register_checker("exact")
def exact(answer: str, ref: Reference) -> bool:
    """Normalised text equality (see `normalize_text`)."""
    return normalize_text(answer) == normalize_text(ref.answer)


@register_checker("countdown")
def countdown(answer: str, ref: Reference) -> bool:
    """The answer is an equation over `ref.meta["numbers"]` (each once) equal to `ref.meta["target"]`."""
    return check_countdown(answer, ref.meta["numbers"], ref.meta["target"])
