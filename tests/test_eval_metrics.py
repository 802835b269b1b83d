"""Evaluation statistics: pass@k against hand values and brute force, cons@k voting, interval coverage."""

import itertools
import math
import random

import pytest

from ponder.evaluate.metrics import (
    REFLECTION_WORDS,
    cons_at_k,
    has_reflection,
    majority_vote,
    mean_ci95,
    pass_at_k,
    pass_at_ks,
    reflection_rate,
    vote_index,
)
from ponder.rewards.base import Reference
from ponder.rewards.checkers import numeric


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of the k-subsets of n samples (the first c correct) that hold at least one correct sample."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_hand_computed():
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(5, 2))  # 0.7
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)  # pass@1 is c / n
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(4, 2, 2) == pytest.approx(1 - 1 / 6)


@pytest.mark.parametrize("n", range(1, 11))
def test_pass_at_k_equals_brute_force_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_edges_and_large_n():
    assert pass_at_k(8, 0, 3) == 0.0
    assert pass_at_k(8, 8, 3) == 1.0
    assert pass_at_k(8, 1, 8) == 1.0  # k = n: all samples drawn
    assert pass_at_k(8, 0, 8) == 0.0
    assert pass_at_k(8, 6, 3) == 1.0  # n - c < k: every subset has a correct one
    # no overflow or cancellation at sizes where the binomials are astronomically large
    assert pass_at_k(1000, 1, 1) == pytest.approx(0.001)
    assert pass_at_k(1000, 500, 100) == pytest.approx(1 - math.comb(500, 100) / math.comb(1000, 100))


@pytest.mark.parametrize(
    "n, c, k, message",
    [(3, 1, 4, "k = 4"), (3, 1, 0, "k = 0"), (3, 4, 1, "c = 4"), (3, -1, 1, "c = -1"), (0, 0, 1, "n = 0")],
)
def test_pass_at_k_rejects_impossible_arguments(n, c, k, message):
    with pytest.raises(ValueError, match=message):
        pass_at_k(n, c, k)
    with pytest.raises(ValueError, match="must be an int"):
        pass_at_k(4, 1.0, 2)


def test_pass_at_ks_are_powers_of_two_below_k_and_k():
    assert pass_at_ks(1) == [1]
    assert pass_at_ks(4) == [1, 2, 4]
    assert pass_at_ks(6) == [1, 2, 4, 6]
    assert pass_at_ks(64) == [1, 2, 4, 8, 16, 32, 64]


def numeric_same(a: str, b: str) -> bool:
    return numeric(b, Reference(a))


def test_majority_vote_clusters_verifier_equivalent_answers():
    answers = ["7", "1,000", "1000.0", "7.5", "1000"]
    assert majority_vote(answers, numeric_same) == "1,000"  # 3 of 5 mean one thousand
    assert vote_index(answers, numeric_same) == 1
    # with exact string equality, the three spellings would split and lose to nothing: a 1-1-1-1-1 tie
    assert majority_vote(answers, lambda a, b: a == b) == "7"


def test_majority_vote_ties_go_to_the_first_answer_and_none_never_wins():
    assert majority_vote(["3", "4", "4", "3"], numeric_same) == "3"  # 2-2: "3" came first
    assert majority_vote(["4", "3", "3", "4"], numeric_same) == "4"
    assert majority_vote([None, None, "5"], numeric_same) == "5"  # nothing extracted is not a vote
    assert majority_vote([None, None], numeric_same) is None
    assert majority_vote([], numeric_same) is None


def test_cons_at_k_is_the_verdict_of_the_voted_answer():
    answers = ["12", "12.0", "13", None]
    assert cons_at_k(answers, [True, True, False, False], numeric_same)
    assert not cons_at_k(["13", "12", "13", "12.0", "13"], [False, True, False, True, False], numeric_same)
    assert not cons_at_k([None, None], [False, False], numeric_same)
    with pytest.raises(ValueError, match="2 answers but 1"):
        cons_at_k(["1", "2"], [True], numeric_same)


def test_mean_ci95_matches_the_normal_formula():
    mean, half = mean_ci95([1.0, 0.0, 1.0, 0.0])
    assert mean == 0.5
    assert half == pytest.approx(1.96 * math.sqrt((4 * 0.25 / 3) / 4))
    mean, half = mean_ci95([0.25])
    assert mean == 0.25 and math.isnan(half)
    with pytest.raises(ValueError, match="no values"):
        mean_ci95([])


@pytest.mark.parametrize("p", [0.3, 0.7])
def test_mean_ci95_covers_the_true_mean_about_95_percent_of_the_time(p):
    rng = random.Random(1234)
    trials, items = 2000, 200
    covered = 0
    for _ in range(trials):
        mean, half = mean_ci95([float(rng.random() < p) for _ in range(items)])
        covered += abs(mean - p) <= half
    assert 0.93 <= covered / trials <= 0.97


def test_a_too_narrow_interval_would_fail_the_coverage_check():
    """The coverage test can fail: half the width covers far less than 93%."""
    rng = random.Random(1234)
    covered = 0
    for _ in range(2000):
        mean, half = mean_ci95([float(rng.random() < 0.3) for _ in range(200)])
        covered += abs(mean - 0.3) <= half / 2
    assert covered / 2000 < 0.9


def test_reflection_words_are_whole_words_any_case():
    assert "wait" in REFLECTION_WORDS
    assert has_reflection("12 apples. Wait, that is wrong")
    assert has_reflection("let me double-check the sum")
    assert has_reflection("Let me recompute: 3 + 4 = 7")
    assert has_reflection("I made a MISTAKE here")
    assert not has_reflection("the waiter checked in")  # "waiter", "checked" are other words
    assert not has_reflection("let me think")
    assert reflection_rate(["wait", "no", "verify this", "fine"]) == 0.5
    assert math.isnan(reflection_rate([]))
