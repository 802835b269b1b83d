"""Rewards: pure functions `fn(completion, Reference) -> float` in the `REWARDS` registry.

Importing this package registers the built-in checkers (numeric, exact, countdown, math) and rewards
(accuracy, accuracy_lenient, format, tags, math_accuracy, math_accuracy_boxed, code_pass, code_partial,
language_consistency, repetition_penalty, cosine_length). Math equivalence (math-verify) runs in killable
worker processes and model-written code in a sandbox (bubblewrap); neither starts before first use.
`ponder.rewards.reward_model` (needs torch) is not imported here: import it to use a reward model.
"""

from ponder.rewards import checkers, language, rules, shaping  # noqa: F401  (import registers)
from ponder.rewards import code as _code  # noqa: F401  (registers code_pass, code_partial)
from ponder.rewards import math as _math  # noqa: F401  (import registers)
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
