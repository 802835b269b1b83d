"""Math answer rewards: symbolic equivalence by math-verify, in killable worker processes, hack-proofed.

Registers the rewards "math_accuracy" (strict: the `<answer>` block is required) and "math_accuracy_boxed"
(the answer block, else the last `\\boxed{}` after the reasoning), and the checker "math".

Pipeline for one completion:
1. extraction (`extract_math_answer`): the answer block, or the last box; optionally the last number;
2. hack screening (`is_hedge`, box rules): a hedge or candidate list ("1/3 or 2", "1, 2, 3", "either 4 or 5",
   "\\pm 3") when the gold has none, several different boxes, an empty box, an over-long answer: all 0;
3. normalisation (`normalize`): `\\text{}` unwrapped, `$` / `\\$` dropped, thousands separators removed,
   "x = " dropped, trailing unit words dropped, a trailing percent sign dropped;
4. `math_verify.parse` + `math_verify.verify` in a `WorkerPool` with a per-sample timeout: a hang (an exponent
   tower, a 10k-character formula) costs one killed worker and an `Unscorable`, never a stuck trainer.

Percent semantics: a percent sign is a unit, so "50\\%" reads as 50 and equals the gold "50" but NOT "0.5"
(the number in front of "%" is what GSM8K-style golds record; math-verify alone would accept both, so a
policy could answer "50%" and "0.5" interchangeably whatever the question asked). The "numeric" checker
agrees.

Why a lazily created, process-wide verifier (`default_verifier`): rewards are plain functions
`fn(completion, ref)`, so the pool cannot be passed in; it is created on first use (importing this module
spawns nothing) and closed at interpreter exit by `atexit`. Code that owns a lifecycle (evaluation, tests)
can build its own `MathVerifier` and use `score_batch` for parallel scoring.
"""

from __future__ import annotations

import atexit
import re
import threading

from ponder.rewards.base import Reference, Unscorable, register_reward
from ponder.rewards.checkers import register_checker
from ponder.rewards.extract import (
    ANSWER_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
    answer_block,
    gsm8k_final,
    last_number,
)
from ponder.rewards.pool import WorkerPool

# No real final answer is this long; longer ones are 0 without reaching sympy.
MAX_ANSWER_CHARS = 1000
MODES = ("answer", "boxed")
FALLBACKS = ("none", "last_number")

_BOX_START = re.compile(r"\\(?:boxed|fbox)\s*\{")
_TEXT = re.compile(r"\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}")
_THOUSANDS = re.compile(r"(?<=\d)(?:,|\{,\}|\\,)(?=\d{3}(?!\d))")
_VARIABLE_PREFIX = re.compile(r"^[a-zA-Z]\s*=\s*")
_PERCENT = re.compile(r"\s*(?:\\%|%|\\text\{\s*percent\s*\}|percent)\s*$")
_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")
_UNIT_WORD = re.compile(r"[a-zA-Z]{2,}\.?")
_NOT_UNITS = frozenset({"pi", "or", "and", "inf", "infinity"})
_HEDGE = re.compile(r"\b(?:or|either|and)\b|\\lor\b|\\vee\b|\\pm\b|\\mp\b|±", re.IGNORECASE)


def all_boxed(text: str) -> list[str]:
    """Contents of every `\\boxed{...}` / `\\fbox{...}` in `text`, stripped, in order of opening.

    One linear pass with a brace stack (nested or unbalanced boxes cannot make it quadratic); a box that
    never closes is left out.
    """
    box_starts = {m.end() - 1 for m in _BOX_START.finditer(text)}  # index of each box's "{"
    if not box_starts:
        return []
    found: list[tuple[int, str]] = []
    stack: list[int] = []
    for i, char in enumerate(text):
        if char == "{":
            stack.append(i)
        elif char == "}" and stack:
            start = stack.pop()
            if start in box_starts:
                found.append((start, text[start + 1 : i].strip()))
    return [content for _, content in sorted(found)]


def _after_reasoning(completion: str) -> str | None:
    """The text after the last `</think>`; None when a `<think>` is never closed (it swallows the rest)."""
    close = completion.rfind(THINK_CLOSE)
    if close >= 0:
        return completion[close + len(THINK_CLOSE) :]
    return None if THINK_OPEN in completion else completion


def _single_box(text: str) -> str | None:
    """The one boxed answer of `text`: None if there is none, an empty box, or several different ones."""
    boxes = all_boxed(text)
    if not boxes or any(not box for box in boxes) or len({normalize(box) for box in boxes}) > 1:
        return None
    return boxes[-1]


def extract_math_answer(completion: str, mode: str = "answer", fallback: str = "none") -> str | None:
    """The final answer of `completion`, or None (scored 0).

    mode "answer": the `<answer>` block is required (see `extract.answer_block`); "boxed": the block, else
    the last `\\boxed{}` after the reasoning. Boxes inside the chosen text must agree and be non-empty.
    fallback "last_number": when nothing else is found, the last number after the reasoning.
    A malformed answer block (an `<answer>` tag without one valid block) is never rescued by a fallback.
    """
    if mode not in MODES or fallback not in FALLBACKS:
        raise ValueError(f"mode must be in {MODES} and fallback in {FALLBACKS}, got {mode!r}, {fallback!r}")
    block = answer_block(completion)
    if block is not None:
        return _single_box(block) if _BOX_START.search(block) else block
    if ANSWER_OPEN in completion or (mode == "answer" and fallback == "none"):
        return None
    visible = _after_reasoning(completion)
    if visible is None:
        return None
    if mode == "boxed" and _BOX_START.search(visible):
        return _single_box(visible)
    return last_number(visible) if fallback == "last_number" else None


def normalize(answer: str) -> str:
    """Answer text math-verify can parse: `\\text{}` unwrapped, `$` dropped, thousands separators removed,
    a leading "x =" dropped, a trailing percent sign and trailing unit words dropped ("18 dollars")."""
    if len(answer) > MAX_ANSWER_CHARS:
        return answer  # rejected by the scorer anyway; keeps every regex here on short strings
    text = _TEXT.sub(r" \1 ", answer).replace("\\$", " ").replace("$", " ").replace("\\!", "")
    text = _THOUSANDS.sub("", text).strip().rstrip(".").strip()
    text = _VARIABLE_PREFIX.sub("", text)
    text = _PERCENT.sub("", text)
    words = text.split()
    while len(words) > 1 and _UNIT_WORD.fullmatch(words[-1]) and words[-1].lower() not in _NOT_UNITS:
        words.pop()
    if len(words) < len(text.split()) and not _PLAIN_NUMBER.fullmatch(" ".join(words)):
        return text  # only strip unit words from a plain number: "2 \pi r" is not "2"
    return _PERCENT.sub("", " ".join(words))


def _top_level_parts(text: str) -> int:
    """How many comma/semicolon-separated parts `text` has outside brackets and braces (set braces `\\{ \\}`
    do not count as brackets, so "\\{1, 2\\}" and "1, 2" both have two parts)."""
    text = text.replace("\\{", "").replace("\\}", "")
    depth, parts = 0, 1
    for char in text:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(0, depth - 1)
        elif char in ",;" and depth == 0:
            parts += 1
    return parts


def is_hedge(answer: str, gold: str) -> bool:
    """True when `answer` offers several candidates the gold does not: a connective ("or", "either",
    "and", "\\lor", "\\pm") the gold lacks, or more top-level list items than the gold ("1, 2, 3")."""
    answer, gold = normalize(answer), normalize(gold)
    if _HEDGE.search(answer) and not _HEDGE.search(gold):
        return True
    return _top_level_parts(answer) > _top_level_parts(gold)


def gold_answer(text: str) -> str:
    """The gold answer in a dataset's answer field: after GSM8K's `####`, else the last box, else the text."""
    if "####" in text:
        final = gsm8k_final(text)
        if final is not None:
            return final
    boxes = all_boxed(text)
    return boxes[-1] if boxes else text.strip()


def _init_worker() -> None:
    """Worker initializer: import math-verify, silence its "timeout disabled" warning (the pool is the
    timeout), and warm sympy's caches so the first real call is not slow."""
    import logging

    import math_verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    math_verify.verify(_parse("1"), _parse("\\frac{2}{2}"), timeout_seconds=None)


def _parse(text: str) -> list:
    import math_verify

    # math-verify's own timeout is signal.alarm: disabled (None); the pool kills a hung worker instead.
    # A plain number is parsed bare (math-verify's expression extractor, ~2.5x faster than its LaTeX path,
    # which needs the `$` delimiters); anything else is LaTeX.
    wrapped = text if _PLAIN_NUMBER.fullmatch(text) else f"${text}$"
    return math_verify.parse(wrapped, parsing_timeout=None)


def _parses(gold: str) -> bool:
    """Worker function: does `gold` (already normalised) parse to a sympy object? On a parse failure
    math-verify returns just the input string (compared as text later): not good enough for a gold."""
    return any(not isinstance(parsed, str) for parsed in _parse(gold))


def _equivalent(gold: str, answer: str) -> bool:
    """Worker function: math-verify equivalence of two normalised answers."""
    import math_verify

    parsed_gold, parsed_answer = _parse(gold), _parse(answer)
    if not parsed_gold or not parsed_answer:
        return False
    return bool(math_verify.verify(parsed_gold, parsed_answer, timeout_seconds=None))


class MathVerifier:
    """Scores answers against golds with math-verify in a `WorkerPool` (`workers` processes, `timeout`
    seconds per sample). `score` raises Unscorable on a timeout; `score_batch` returns NaN for those."""

    def __init__(self, workers: int = 2, timeout: float = 5.0) -> None:
        self.pool = WorkerPool(workers=workers, timeout=timeout, initializer=_init_worker)

    def _screen(self, answer: str | None, gold: str) -> tuple[str, str] | None:
        """The normalised (gold, answer) pair to verify, or None when the answer is a 0 without a CAS."""
        if answer is None or len(answer) > MAX_ANSWER_CHARS or is_hedge(answer, gold):
            return None
        normalized = normalize(answer)
        return (normalize(gold), normalized) if normalized else None

    def equivalent(self, answer: str | None, gold: str) -> bool:
        """Whether the extracted `answer` means the same as `gold` (raises Unscorable on timeout/crash)."""
        pair = self._screen(answer, gold)
        return pair is not None and bool(self.pool.run(_equivalent, *pair))

    def score(self, completion: str, gold: str, mode: str = "answer", fallback: str = "none") -> float:
        """1.0 if the answer extracted from `completion` (`extract_math_answer`) equals `gold`, else 0.0."""
        return 1.0 if self.equivalent(extract_math_answer(completion, mode, fallback), gold) else 0.0

    def score_batch(
        self, completions: list[str], golds: list[str], mode: str = "answer", fallback: str = "none"
    ) -> list[float]:
        """`score` over many samples, verified in parallel across the workers; NaN marks unscorable ones."""
        if len(completions) != len(golds):
            raise ValueError(f"{len(completions)} completions but {len(golds)} golds")
        pairs = [
            self._screen(extract_math_answer(c, mode, fallback), gold)
            for c, gold in zip(completions, golds, strict=True)
        ]
        todo = [pair for pair in pairs if pair is not None]
        verdicts = iter(self.pool.map(_equivalent, todo))
        scores = []
        for pair in pairs:
            verdict = False if pair is None else next(verdicts)
            scores.append(float("nan") if isinstance(verdict, Unscorable) else float(bool(verdict)))
        return scores

    def check_gold(self, answer: str) -> None:
        """Raise ValueError naming `answer` unless it parses (a timeout counts as not parsing)."""
        gold = normalize(gold_answer(answer))
        try:
            ok = bool(gold) and self.pool.run(_parses, gold)
        except Unscorable as exc:
            raise ValueError(f"gold answer {answer!r} cannot be parsed by math-verify: {exc}") from None
        if not ok:
            raise ValueError(f"gold answer {answer!r} cannot be parsed by math-verify")

    def close(self) -> None:
        """Stop the worker processes."""
        self.pool.close()

    def __enter__(self) -> MathVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _SharedVerifier:
    """The process-wide verifier behind the registered rewards: created on first use, closed at exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._verifier: MathVerifier | None = None

    def get(self) -> MathVerifier:
        with self._lock:  # two threads scoring at once must not start two pools
            if self._verifier is None:
                self._verifier = MathVerifier()
                atexit.register(self._verifier.close)
            return self._verifier


_SHARED = _SharedVerifier()


def default_verifier() -> MathVerifier:
    """The shared `MathVerifier` (2 workers, 5 s per sample) used by the registered rewards and checker."""
    return _SHARED.get()


def check_gold(answer: str) -> None:
    """Raise ValueError naming `answer` unless math-verify can parse it; file loaders call this at load time
    so a broken gold fails the run before training rather than silently scoring every sample 0."""
    default_verifier().check_gold(answer)


@register_checker("math")
def math_checker(answer: str, ref: Reference) -> bool:
    """Symbolic equivalence of an extracted answer and `ref.answer` (a `####` / boxed gold is unwrapped)."""
    return default_verifier().equivalent(answer, gold_answer(ref.answer))


@register_reward("math_accuracy")
def math_accuracy(completion: str, ref: Reference) -> float:
    """1.0 iff the one valid `<answer>` block (a box inside it is unwrapped) is equivalent to the gold.

    Strict as R1: no answer block, no credit; an answer only inside the think block gets 0.
    """
    return default_verifier().score(completion, gold_answer(ref.answer), mode="answer")


@register_reward("math_accuracy_boxed")
def math_accuracy_boxed(completion: str, ref: Reference) -> float:
    """1.0 iff the answer block, or else the last `\\boxed{}` after the reasoning, is equivalent to the gold.

    For instruct models that box their answer (MATH style) instead of using the R1 tags.
    """
    return default_verifier().score(completion, gold_answer(ref.answer), mode="boxed")
