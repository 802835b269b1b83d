"""Text-level reward shaping: n-gram repetition penalty and cosine length scaling (Yeo et al. 2025).

Both come from "Demystifying Long Chain-of-Thought Reasoning in LLMs" (Yeo, Tong, Niu, Neubig, Yue 2025,
arXiv:2502.03373, section 4), which found that long-CoT RL needs them to keep length growth stable:
a cosine reward that makes length pay only for wrong answers, and a repetition penalty because a policy
otherwise learns to pad its CoT with repeats (the cheapest way to get long).

Lengths here are whitespace-separated words of the completion, not tokens: rewards see text only
(architecture.md), and a word count does not change with the tokenizer. DAPO's overlong penalty, which
needs token counts, stays in `ponder.algos.shaping.overlong_penalty`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ponder.rewards.base import Reference, register_reward
from ponder.rewards.rules import accuracy

RewardFn = Callable[[str, Reference], float]


def ngram_repetition(text: str, n: int = 3) -> float:
    """Share of repeated word n-grams, in [0, 1]: 1 - #distinct n-grams / #n-grams.

    Words are the lower-cased whitespace tokens of `text`; a text of fewer than n words has no n-grams
    and scores 0 (nothing repeated).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    words = text.lower().split()
    ngrams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not ngrams:
        return 0.0
    return 1.0 - len(set(ngrams)) / len(ngrams)


def make_repetition_penalty(n: int = 3, max_penalty: float = -1.0) -> RewardFn:
    """A reward `max_penalty * ngram_repetition(completion, n)`, in [max_penalty, 0].

    The n-gram repetition penalty of Yeo et al. 2025 (section 4.3; also open-r1's repetition reward):
    0 for text without repeated n-grams, `max_penalty` in the limit of one n-gram repeated forever.
    Scored on the whole completion, so repeating the answer block is penalised too.
    """
    if max_penalty > 0:
        raise ValueError(f"max_penalty must be <= 0 (it is a penalty), got {max_penalty}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")

    def repetition_penalty(completion: str, ref: Reference) -> float:
        """max_penalty * (1 - distinct word n-grams / all word n-grams) of the completion."""
        return max_penalty * ngram_repetition(completion, n)

    return repetition_penalty


repetition_penalty = register_reward("repetition_penalty")(make_repetition_penalty())

# Yeo et al. 2025 appendix (cosine reward hyperparameters): correct +2 -> +1, wrong -10 -> 0, exceed -10.
R_CORRECT_0, R_CORRECT_L = 2.0, 1.0
R_WRONG_0, R_WRONG_L = -10.0, 0.0
R_EXCEED = -10.0
MAX_LEN = 1000  # words; the paper's L_max is in tokens, override per item with ref.meta["max_len"]


def cosine_schedule(length: float, max_len: float, r_0: float, r_L: float) -> float:
    """Yeo et al. 2025 eq. 1, CosFn written with its endpoints: r_0 at length 0, r_L at length max_len.

        CosFn(t, T) = r_L + (r_0 - r_L) * (1 + cos(pi * t / T)) / 2

    `length` is clipped to [0, max_len]; monotonic in between (decreasing iff r_0 > r_L).
    """
    if max_len <= 0:
        raise ValueError(f"max_len must be positive, got {max_len}")
    t = min(max(length, 0.0), max_len)
    return r_L + 0.5 * (r_0 - r_L) * (1.0 + math.cos(math.pi * t / max_len))


def make_cosine_length(
    max_len: int = MAX_LEN,
    r_correct_0: float = R_CORRECT_0,
    r_correct_L: float = R_CORRECT_L,
    r_wrong_0: float = R_WRONG_0,
    r_wrong_L: float = R_WRONG_L,
    r_exceed: float = R_EXCEED,
) -> RewardFn:
    """Cosine length-scaled correctness reward (Yeo et al. 2025 eq. 1); defaults are the paper's.

        R(C, L) = CosFn(L, L_max, r_correct_0, r_correct_L)   if correct
                = CosFn(L, L_max, r_wrong_0,   r_wrong_L)     if wrong
                = r_exceed                                    if L > L_max

    C is the `accuracy` reward (rules.py, strict `<answer>` block); L is the completion's whitespace-word
    count; L_max is `ref.meta.get("max_len", max_len)`. Short correct answers earn most, and a wrong
    answer is punished less the longer the model thought, so thinking longer pays only when it is needed.
    Departure: the paper gives r_exceed at L = L_max, a generation truncated by the token limit; word
    counts cannot see truncation, so here r_exceed applies only beyond L_max and L_max itself scores the
    r_*_L endpoint.
    """
    if max_len <= 0:
        raise ValueError(f"max_len must be positive, got {max_len}")

    def cosine_length(completion: str, ref: Reference) -> float:
        """CosFn of the completion's word count, toward r_correct_* or r_wrong_* by `accuracy`."""
        limit = ref.meta.get("max_len", max_len)
        length = len(completion.split())
        if length > limit:
            return r_exceed
        if accuracy(completion, ref) > 0:
            return cosine_schedule(length, limit, r_correct_0, r_correct_L)
        return cosine_schedule(length, limit, r_wrong_0, r_wrong_L)

    return cosine_length


cosine_length = register_reward("cosine_length")(make_cosine_length())
