"""Math rewards (math-verify in a killable worker pool): true equivalences score 1, reward hacks score 0,
adversarial inputs never hang (main thread or not), hung workers are killed and replaced, no process leaks.

    python -m pytest -q tests/test_math_reward.py          # add -s to see the measured checks per second
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import psutil
import pytest

from ponder.rewards import REWARDS, Reference, Unscorable, get_checker
from ponder.rewards.math import (
    MathVerifier,
    _equivalent,
    all_boxed,
    check_gold,
    extract_math_answer,
    gold_answer,
    is_hedge,
    normalize,
)
from ponder.rewards.pool import WorkerPool

TIMEOUT = 1.0  # a simple check takes ~5 ms; hangs are killed after this
MARGIN = 3.0  # process kill + reap, and CPU contention on a 2-core machine


@pytest.fixture(scope="module")
def verifier():
    with MathVerifier(workers=2, timeout=TIMEOUT) as v:
        yield v


def wrap(answer: str) -> str:
    return f"<think>reasoning</think>\n<answer>{answer}</answer>"


# (gold, answer): equal by math-verify after normalisation.
EQUIVALENT = [
    ("\\frac{1}{2}", "0.5"),
    ("0.5", "\\frac{1}{2}"),
    ("1000", "1,000"),
    ("1000", "1{,}000"),
    ("5", "\\$5"),
    ("5", "$5$"),
    ("5", "5 dollars"),
    ("5", "\\text{5 dollars}"),
    ("12", "12 \\text{ cm}"),
    ("3", "x = 3"),
    ("2", "\\sqrt{4}"),
    ("\\frac12", "\\frac{2}{4}"),
    ("3", "3.0"),
    ("-7", "-7"),
    ("50", "50\\%"),  # percent semantics: "50%" reads as 50
    ("50", "50%"),
    ("2\\pi", "2 \\pi"),
    ("\\{1, 2\\}", "1, 2"),
    ("1, 2", "2, 1"),
    ("1234", "1,234"),
]

NOT_EQUIVALENT = [
    ("0.5", "50\\%"),  # percent semantics: "50%" is 50, not 0.5
    ("2", "3"),
    ("\\frac{1}{3}", "0.5"),
    ("2\\pi", "2"),
    ("1, 2", "1, 3"),
]


@pytest.mark.parametrize(("gold", "answer"), EQUIVALENT)
def test_true_equivalences_score_one(verifier, gold, answer):
    assert verifier.score(wrap(answer), gold) == 1.0


@pytest.mark.parametrize(("gold", "answer"), NOT_EQUIVALENT)
def test_different_answers_score_zero(verifier, gold, answer):
    assert verifier.score(wrap(answer), gold) == 0.0


HEDGES = ["1/3 or 2", "2 or 1/3", "1, 2, 3", "either 2 or 5", "2 and 3", "2; 3", "\\pm 2", "2 \\text{ or } 4"]


@pytest.mark.parametrize("answer", HEDGES)
def test_hedges_and_candidate_lists_score_zero(verifier, answer):
    assert is_hedge(answer, "2")
    assert verifier.score(wrap(answer), "2") == 0.0
    assert verifier.score(f"<think>x</think> so \\boxed{{{answer}}}", "2", mode="boxed") == 0.0


def test_a_list_gold_accepts_a_list_but_a_single_gold_does_not():
    assert not is_hedge("1, 2", "1, 2")
    assert not is_hedge("\\{1, 2\\}", "1, 2")
    assert is_hedge("1, 2", "2")


HACKS = {
    "two different boxes": "<think>x</think> \\boxed{2} or maybe \\boxed{3}",
    "two different boxes in the block": "<think>x</think><answer>\\boxed{2} \\boxed{3}</answer>",
    "empty box": "<think>x</think> \\boxed{}",
    "empty box beside the right one": "<think>x</think> \\boxed{2} \\boxed{ }",
    "answer only in think": "<think>the answer is <answer>2</answer></think> done",
    "box only in think": "<think>\\boxed{2}</think> I am not sure.",
    "unclosed think": "<think>\\boxed{2}",
    "two answer blocks": "<think>x</think><answer>2</answer><answer>3</answer>",
    "malformed block then box": "<think>x</think><answer>3 \\boxed{2}",
}


@pytest.mark.parametrize("completion", list(HACKS.values()), ids=list(HACKS))
def test_hacking_corpus_scores_zero(verifier, completion):
    assert verifier.score(completion, "2", mode="answer") == 0.0
    assert verifier.score(completion, "2", mode="boxed") == 0.0


def test_strict_mode_needs_the_block_and_boxed_mode_accepts_the_last_box(verifier):
    boxed_only = "<think>2 + 2 = 4</think> The answer is \\boxed{4}."
    assert verifier.score(boxed_only, "4", mode="answer") == 0.0
    assert verifier.score(boxed_only, "4", mode="boxed") == 1.0
    assert verifier.score("Thus \\boxed{4} and again \\boxed{4}", "4", mode="boxed") == 1.0  # no think tags
    assert verifier.score(wrap("\\boxed{\\frac{1}{2}}"), "0.5") == 1.0  # a box inside the block


def test_last_number_fallback_is_opt_in(verifier):
    completion = "<think>x</think> so she pays 1,234 dollars"
    assert extract_math_answer(completion, "boxed") is None
    assert extract_math_answer(completion, "boxed", fallback="last_number") == "1234"
    assert verifier.score(completion, "1234", mode="boxed", fallback="last_number") == 1.0
    with pytest.raises(ValueError, match="fallback"):
        extract_math_answer(completion, fallback="first_number")


def test_extraction_helpers():
    assert all_boxed("\\boxed{a} x \\fbox{\\frac{1}{2}} \\boxed{\\boxed{b}} \\boxed{open") == [
        "a",
        "\\frac{1}{2}",
        "\\boxed{b}",
        "b",
    ]
    assert gold_answer("She pays 9 * 2 = $18.\n#### 1,018") == "1018"
    assert gold_answer("so $\\boxed{\\frac{1}{2}}$") == "\\frac{1}{2}"
    assert normalize("\\$1,234.") == "1234"
    assert normalize("2 \\pi r") == "2 \\pi r"


def test_check_gold_rejects_unparsable_gold_by_name(verifier):
    verifier.check_gold("#### 1,234")
    verifier.check_gold("\\frac{1}{2}")
    for bad in ["", "\\frac{1}{", "#### "]:
        with pytest.raises(ValueError, match="cannot be parsed"):
            verifier.check_gold(bad)
    with pytest.raises(ValueError, match=r"\\\\frac\{1\}\{"):
        verifier.check_gold("\\frac{1}{")


def test_registered_rewards_and_checker_use_the_shared_verifier():
    ref = Reference(answer="#### 1,000", checker="math")
    assert REWARDS["math_accuracy"](wrap("1000"), ref) == 1.0
    assert REWARDS["math_accuracy"]("<think>x</think> \\boxed{1000}", ref) == 0.0
    assert REWARDS["math_accuracy_boxed"]("<think>x</think> \\boxed{1000}", ref) == 1.0
    assert get_checker("math")("\\$1,000", ref) is True
    check_gold("#### 7")
    with pytest.raises(ValueError, match="cannot be parsed"):
        check_gold("\\sqrt{")


HANGS = {
    "exponent tower": "9^{9^{9^{9}}}",
    "tall tower": "2^{2^{2^{2^{2^{2^{2}}}}}}",
    "python power": "10**10**8",
    "10k-character latex": "\\frac{1}{2}+" * 909 + "1",
    "nested braces": "{" * 3000 + "1" + "}" * 3000,
    "nested parentheses": "(" * 3000 + "1" + ")" * 3000,
    "nested sqrt": "\\sqrt{" * 300 + "2" + "}" * 300,
}


def _score_or_unscorable(verifier, completion: str, gold: str) -> tuple[float | str, float]:
    start = time.monotonic()
    try:
        result: float | str = verifier.score(completion, gold)
    except Unscorable:
        result = "unscorable"
    return result, time.monotonic() - start


@pytest.mark.parametrize("answer", list(HANGS.values()), ids=list(HANGS))
def test_hang_corpus_answers_within_the_timeout_in_main_and_other_threads(verifier, answer):
    result, elapsed = _score_or_unscorable(verifier, wrap(answer), "3")
    assert result in (0.0, "unscorable") and elapsed < TIMEOUT + MARGIN, (result, elapsed)

    outcome: dict[str, tuple[float | str, float]] = {}
    thread = threading.Thread(
        target=lambda: outcome.update(r=_score_or_unscorable(verifier, wrap(answer), "3"))
    )
    thread.start()
    thread.join(TIMEOUT + MARGIN + 5)
    assert not thread.is_alive()
    result, elapsed = outcome["r"]
    assert result in (0.0, "unscorable") and elapsed < TIMEOUT + MARGIN, (result, elapsed)


def test_over_long_answers_reach_the_pool_only_when_asked_and_still_cannot_hang(verifier):
    huge = "\\frac{1}{2}+" * 909 + "1"
    assert verifier.score(wrap(huge), "3") == 0.0  # over MAX_ANSWER_CHARS: no CAS at all
    start = time.monotonic()
    results = verifier.pool.map(_equivalent, [("3", huge), ("3", "9^{9^{9^{9}}}"), ("3", "3")])
    assert time.monotonic() - start < 2 * TIMEOUT + MARGIN
    assert results[0] in (False, True) or isinstance(results[0], Unscorable)
    assert isinstance(results[1], Unscorable)
    assert results[2] is True


def test_score_batch_marks_timeouts_nan_and_keeps_order(verifier):
    completions = [wrap("1"), wrap("9^{9^{9^{9}}}"), wrap("2"), "no answer", wrap("\\frac{6}{2}")]
    scores = verifier.score_batch(completions, ["1", "3", "5", "1", "3"])
    assert scores[0] == 1.0 and scores[2] == 0.0 and scores[3] == 0.0 and scores[4] == 1.0
    assert scores[1] != scores[1]  # NaN: unscorable, not wrong


def _sleep_then(seconds: float, value: int) -> int:
    time.sleep(seconds)
    return value


def _crash() -> None:
    os._exit(3)


def _raise() -> None:
    raise RuntimeError("boom")


def _children() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


def test_pool_kills_and_replaces_a_hung_worker_and_leaks_nothing_after_close():
    before = _children()
    pool = WorkerPool(workers=1, timeout=0.5)
    try:
        assert pool.run(_sleep_then, 0.0, 7) == 7
        (first_pid,) = _children() - before
        start = time.monotonic()
        with pytest.raises(Unscorable, match="timed out"):
            pool.run(_sleep_then, 30.0, 1)
        assert time.monotonic() - start < 0.5 + MARGIN
        assert not psutil.pid_exists(first_pid) or psutil.Process(first_pid).status() == psutil.STATUS_ZOMBIE
        assert pool.run(_sleep_then, 0.0, 8) == 8  # the replacement works
        assert _children() - before and first_pid not in _children()
        with pytest.raises(Unscorable, match="died"):
            pool.run(_crash)
        with pytest.raises(Unscorable, match="boom"):
            pool.run(_raise)
        assert pool.map(_sleep_then, [(0.0, 1), (30.0, 2), (0.0, 3)])[::2] == [1, 3]
    finally:
        pool.close()
    assert _children() - before == set()


def test_pool_runs_calls_from_a_non_main_thread():
    before = _children()
    results: list[object] = []
    with WorkerPool(workers=2, timeout=0.5) as pool:

        def work() -> None:
            results.append(pool.run(_sleep_then, 0.0, 5))
            try:
                pool.run(_sleep_then, 30.0, 6)
            except Unscorable as exc:
                results.append(exc)

        thread = threading.Thread(target=work)
        thread.start()
        thread.join(10)
    assert results[0] == 5 and isinstance(results[1], Unscorable)
    assert _children() - before == set()


def _gsm8k_path() -> Path | None:
    for root in (Path("/work/shared/data"), Path(__file__).resolve().parents[1] / ".." / "shared" / "data"):
        if (root / "gsm8k_test.jsonl").exists():
            return root / "gsm8k_test.jsonl"
    return None


def _variants(gold: str) -> list[str]:
    """Formattings of a GSM8K gold a correct model may write: thousands commas, dollars, ".0", a box."""
    variants = [f"\\${gold}", f"\\boxed{{{gold}}}"]
    if gold.lstrip("-").isdigit():
        variants += [f"{int(gold):,}", f"{gold}.0"]
    return variants


@pytest.mark.skipif(
    _gsm8k_path() is None, reason="GSM8K test set not found at /work/shared/data/gsm8k_test.jsonl"
)
def test_every_gsm8k_test_gold_parses_and_matches_its_formatting_variants(verifier):
    golds = [gold_answer(json.loads(line)["answer"]) for line in _gsm8k_path().read_text().splitlines()]
    assert len(golds) > 1000
    golds = sorted(set(golds))  # each distinct gold once: repeats test nothing new
    for gold in golds:
        verifier.check_gold(gold)
    completions, targets = [], []
    for gold in golds:
        for variant in _variants(gold):
            completions.append(wrap(variant))
            targets.append(gold)
    scores = verifier.score_batch(completions, targets)
    failures = [(t, c) for t, c, s in zip(targets, completions, scores, strict=True) if s != 1.0]
    assert not failures, failures[:10]


def test_measure_math_checks_per_second(verifier):
    """Simple distinct answers through `score_batch` (the pool's map); the number is printed, not asserted."""
    n = 1000
    completions = [wrap(str(i + 100_000)) for i in range(n)]
    golds = [str(i + 100_000) if i % 2 else str(i + 100_001) for i in range(n)]
    start = time.monotonic()
    scores = verifier.score_batch(completions, golds)
    rate = n / (time.monotonic() - start)
    print(f"\nmath checks per second (2 workers, simple answers): {rate:.0f}")
    assert sum(scores) == n // 2
