"""Evaluation statistics the way the DeepSeek-R1 paper reports them (arXiv:2501.12948 section 3):

- pass@1 is the mean correctness over k samples per problem (temperature 0.6, top-p 0.95), averaged over
  problems; `mean_ci95` gives it a 95% interval from the spread across problems;
- pass@k, the chance that at least one of k samples is right, by the unbiased estimator of Chen et al. 2021
  (arXiv:2107.03374, eq. 1) from n >= k samples with c correct;
- cons@k, majority voting over the k samples' answers (`majority_vote`); answers a verifier calls equal
  ("1,000", "1000", "1000.0") count as one answer;
- the reflection-word rate, the share of responses that pause to re-check ("wait", "let me re..."): R1-Zero's
  "aha moment" (section 2.2.4) made countable.

Pure python (standard library only), so it can be checked against brute force in tests.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence

# Words and phrases of self-reflection, matched as whole words, case-insensitive; a trailing "*" matches
# any word that starts there ("let me re*": "let me recompute", "let me re-read").
REFLECTION_WORDS = (
    "wait",
    "verify",
    "check",
    "recheck",
    "re-check",
    "double-check",
    "re-evaluate",
    "reevaluate",
    "re-examine",
    "reconsider",
    "rethink",
    "mistake",
    "let me re*",
)


def _word_pattern(word: str) -> str:
    escaped = re.escape(word.removesuffix("*")).replace(r"\ ", r"\s+")
    return rf"\b{escaped}" + (r"" if word.endswith("*") else r"\b")


_REFLECTION = re.compile("|".join(_word_pattern(w) for w in REFLECTION_WORDS), re.IGNORECASE)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k).

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i) (Chen et al. 2021, the numerically stable form: no
    huge binomials, so n = 1000 samples is fine). It is the probability that a k-subset drawn without
    replacement from the n samples holds at least one correct one.
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"pass_at_k: {name} must be an int, got {value!r}")
    if n < 1:
        raise ValueError(f"pass_at_k: n = {n} samples; need at least 1")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: c = {c} correct is outside [0, n = {n}]")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: k = {k} must be in [1, n = {n}] (cannot draw more samples than exist)")
    if n - c < k:
        return 1.0  # every k-subset contains a correct sample
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% normal interval) over per-problem scores.

    half-width = 1.96 * s / sqrt(n) with s the sample standard deviation (n - 1 denominator): the
    uncertainty from which problems were drawn, the one that matters when comparing models on a benchmark.
    With fewer than 2 values the half-width is NaN (no spread to estimate).
    """
    n = len(values)
    if n == 0:
        raise ValueError("mean_ci95: no values")
    mean = math.fsum(values) / n
    if n < 2:
        return mean, float("nan")
    var = math.fsum((x - mean) ** 2 for x in values) / (n - 1)
    return mean, 1.96 * math.sqrt(var / n)


def vote_index(answers: Sequence[str | None], same: Callable[[str, str], bool]) -> int | None:
    """Index of the first answer of the largest cluster of equal answers, or None if no answer was extracted.

    Answers are clustered greedily: each joins the first cluster whose first answer `same` accepts (so a
    checker that is not transitive still gives one deterministic result). Ties go to the cluster that
    appeared first; None (nothing extracted) never joins or wins.
    """
    clusters: list[list[int]] = []  # indices; the first is the cluster's representative
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        for cluster in clusters:
            if same(answers[cluster[0]], answer):
                cluster.append(i)
                break
        else:
            clusters.append([i])
    if not clusters:
        return None
    best = max(len(cluster) for cluster in clusters)
    return next(cluster[0] for cluster in clusters if len(cluster) == best)


def majority_vote(answers: Sequence[str | None], same: Callable[[str, str], bool]) -> str | None:
    """The majority answer over verifier-equivalent answers (cons@k's vote); see `vote_index`."""
    index = vote_index(answers, same)
    return None if index is None else answers[index]


def cons_at_k(
    answers: Sequence[str | None], correct: Sequence[bool], same: Callable[[str, str], bool]
) -> bool:
    """cons@k for one problem: whether the majority answer is right. `correct[i]` is answer i's verdict;
    the voted cluster's first answer stands for the cluster. No extracted answer at all is wrong."""
    if len(answers) != len(correct):
        raise ValueError(f"cons_at_k: {len(answers)} answers but {len(correct)} verdicts")
    index = vote_index(answers, same)
    return index is not None and bool(correct[index])


def has_reflection(text: str) -> bool:
    """Whether `text` contains one of `REFLECTION_WORDS` (whole words, any case)."""
    return _REFLECTION.search(text) is not None


def reflection_rate(texts: Iterable[str]) -> float:
    """Share of `texts` that contain a reflection word; NaN for no texts."""
    flags = [has_reflection(t) for t in texts]
    return sum(flags) / len(flags) if flags else float("nan")


def pass_at_ks(k: int) -> list[int]:
    """The k values a k-sample evaluation reports pass@ for: each power of two below k, and k itself."""
    if k < 1:
        raise ValueError(f"k = {k} must be >= 1")
    powers = [2**i for i in range(k.bit_length()) if 2**i < k]
    return [*powers, k]
