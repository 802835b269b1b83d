"""Rule-based rewards (DeepSeek-R1-Zero, arXiv:2501.12948 section 2.2.2: accuracy + format, no reward model).

Each reward returns a float in [0, 1]. Rewards are registered by name; a recipe picks them with weights.
"""

from __future__ import annotations

import re

from ponder.rewards.base import Reference, register_reward
from ponder.rewards.checkers import get_checker
from ponder.rewards.extract import TAGS, answer_block, last_number, strip_tags

# Whole-completion shape: <think> X </think> <answer> Y </answer>, whitespace allowed only around the blocks.
# Decoded text is expected without special tokens (the rollout decodes with skip_special_tokens), so
# anything after </answer> other than whitespace, an eos string included, fails the format.
_FORMAT = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.DOTALL)


def _is_correct(answer: str | None, ref: Reference) -> bool:
    return answer is not None and get_checker(ref.checker)(answer, ref)


@register_reward("accuracy")
def accuracy(completion: str, ref: Reference) -> float:
    """1.0 iff there is one valid `<answer>` block (see `answer_block`) and the task checker accepts it.

    Strict as in R1: no answer block, no credit, however right the reasoning was.
    """
    return 1.0 if _is_correct(answer_block(completion), ref) else 0.0


@register_reward("accuracy_lenient")
def accuracy_lenient(completion: str, ref: Reference) -> float:
    """1.0 if the answer block is right; else 0.5 if there is no valid answer block but the last number of the
    tag-stripped text is right; else 0.

    Why the half credit: a small base model rarely emits the tags at first, so strict accuracy is 0 for every
    sample in a group and GRPO's group-normalised advantage is 0 too: no learning signal. Half credit rewards
    being right, while the full point still requires the format. A wrong answer block gets 0 (no fallback), so
    a policy cannot hedge with a wrong block and a right number elsewhere; nor can it hedge with several
    blocks: any `<answer>` tag without one valid block gets 0. Only for numeric answers.
    """
    block = answer_block(completion)
    if block is not None:
        return 1.0 if _is_correct(block, ref) else 0.0
    if "<answer>" in completion:
        return 0.0
    return 0.5 if _is_correct(last_number(strip_tags(completion)), ref) else 0.0


@register_reward("format")
def format_reward(completion: str, ref: Reference) -> float:
    """1.0 iff the completion is exactly `<think>T</think><answer>A</answer>` up to surrounding whitespace,
    with each tag exactly once and T, A non-blank; else 0.0."""
    if any(completion.count(tag) != 1 for tag in TAGS):
        return 0.0
    match = _FORMAT.fullmatch(completion)
    if match is None or not match.group(1).strip() or not match.group(2).strip():
        return 0.0
    return 1.0


@register_reward("tags")
def tags(completion: str, ref: Reference) -> float:
    """0.25 for each of `<think>`, `</think>`, `<answer>`, `</answer>` that appears exactly once (max 1.0).

    Partial format credit, a denser signal than "format" that helps a weak model discover the tags
    (as in open-r1's tag-count reward); it ignores order, so pair it with "format".
    """
    return 0.25 * sum(completion.count(tag) == 1 for tag in TAGS)
