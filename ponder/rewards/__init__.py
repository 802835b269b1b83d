"""Rewards: pure functions `fn(completion, Reference) -> float` in the `REWARDS` registry (stdlib only).

Importing this package registers the built-in checkers (numeric, exact, countdown) and rewards
(accuracy, accuracy_lenient, format, tags).
"""

from ponder.rewards import checkers, rules  # noqa: F401  (import registers)
from ponder.rewards.base import (
    REWARDS,
    Reference,
    Unscorable,
    get_reward,
    register_reward,
    score_all,
    weighted_sum,
)
from ponder.rewards.checkers import CHECKERS, get_checker, register_checker
from ponder.rewards.extract import answer_block, extract_answer

__all__ = [
    "CHECKERS",
    "REWARDS",
    "Reference",
    "Unscorable",
    "answer_block",
    "extract_answer",
    "get_checker",
    "get_reward",
    "register_checker",
    "register_reward",
    "score_all",
    "weighted_sum",
]
