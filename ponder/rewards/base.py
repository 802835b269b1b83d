"""Reward registry: the `Reference` a task item carries, `register_reward`, and the weighted sum.

A reward is a pure function `fn(completion: str, ref: Reference) -> float`. `completion` is the assistant's
whole response text (including any prefilled `<think>`). The GRPO stage scores every completion with the
rewards named in the recipe and trains on their weighted sum (DeepSeek-R1 sums an accuracy and a format
reward, arXiv:2501.12948 section 2.2.2).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ponder.registry import Registry


@dataclass(frozen=True)
class Reference:
    """Ground truth for one prompt.

    `answer` is the reference answer as text, `checker` names a function in `rewards.checkers.CHECKERS`,
    `meta` holds checker-specific data (countdown: `{"numbers": [...], "target": n}`).
    """

    answer: str
    checker: str = "numeric"
    meta: Mapping[str, Any] = field(default_factory=dict)


RewardFn = Callable[[str, Reference], float]


class Unscorable(Exception):
    """Raised by a reward that could not judge a sample (verifier timeout, crashed worker, sandbox failure).

    Unscorable is not wrong: `score_all` records NaN, and the trainer leaves the sample out of its group's
    baseline and out of the loss, and counts it (DeepSeek-R1 does not say; peers score such samples 0,
    which drags the group baseline down for an infrastructure failure).
    """


REWARDS = Registry("reward")
register_reward = REWARDS.register


def get_reward(name: str) -> RewardFn:
    """The reward registered as `name`; an unknown name raises ValueError listing the choices."""
    return REWARDS[name]


def weighted_sum(scores: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """total = sum_r weights[r] * scores[r] over the rewards named in `weights`.

    A weight whose score is missing is an error rather than a silent 0, so a typo in a recipe shows up.
    """
    missing = [name for name in weights if name not in scores]
    if missing:
        raise KeyError(f"no score for weighted reward(s) {missing}; scores have {sorted(scores)}")
    return float(sum(weight * scores[name] for name, weight in weights.items()))


def score_all(completion: str, ref: Reference, weights: Mapping[str, float]) -> dict[str, float]:
    """Each reward named in `weights` on one completion (raw, unweighted), plus "total" = weighted sum."""
    if "total" in weights:
        raise ValueError("'total' is reserved for the weighted sum and cannot be a reward name")
    scores = {name: _score_one(name, completion, ref) for name in weights}
    scores["total"] = weighted_sum(scores, weights)  # NaN when any weighted reward was unscorable
    return scores


def _score_one(name: str, completion: str, ref: Reference) -> float:
    try:
        return float(get_reward(name)(completion, ref))
    except Unscorable:
        return float("nan")
