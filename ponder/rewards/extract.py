"""Pull a final answer out of model text: `<answer>` block, `\\boxed{}`, GSM8K's `#### N`, last number.

The `<answer>` rule is deliberately strict (R1-Zero template, arXiv:2501.12948 table 1): exactly one
answer block, and it must come after the reasoning. Every loophole left open here is one a policy will find
under RL (e.g. printing several candidate answers, or hiding the answer inside the think block).
"""

from __future__ import annotations

import re

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)

# A minus sign counts only when it is not glued to a preceding word/number/bracket, so "10-3" ends in "3".
# Thousands groups ("1,234,567") come before plain digits so the alternation prefers them.
_NUMBER = re.compile(r"(?:(?<![\w)\]}])-)?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)")
_GSM8K = re.compile(r"####\s*([^\n]*)")


def answer_block(completion: str) -> str | None:
    """Content of THE `<answer>...</answer>` block, stripped, or None.

    None when there are zero or several `<answer>` / `</answer>` tags, when the tags are out of order,
    when the block is empty or whitespace, or when it is not after the reasoning: if the completion has a
    `</think>`, the block must start after the last one; a `<think>` that is never closed swallows
    everything after it, so no answer can count.
    """
    if completion.count(ANSWER_OPEN) != 1 or completion.count(ANSWER_CLOSE) != 1:
        return None
    start = completion.index(ANSWER_OPEN)
    end = completion.index(ANSWER_CLOSE)
    if end < start:
        return None
    think_close = completion.rfind(THINK_CLOSE)
    if think_close >= 0 and start < think_close + len(THINK_CLOSE):
        return None
    if think_close < 0 and THINK_OPEN in completion:
        return None
    content = completion[start + len(ANSWER_OPEN) : end].strip()
    return content or None


def last_number(text: str) -> str | None:
    """The last number in `text`, normalised: thousands commas removed, e.g. "costs $1,234." -> "1234".

    Handles negatives ("-3"), decimals ("2.5") and a sentence's trailing period (not part of the number).
    """
    matches = _NUMBER.findall(text)
    if not matches:
        return None
    return matches[-1].replace(",", "")


def boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`), braces balanced, stripped; None if absent."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    if not starts:
        return None
    begin = starts[-1]
    depth = 1
    for i in range(begin, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                content = text[begin:i].strip()
                return content or None
    return None  # unbalanced braces: the box never closes


def gsm8k_final(text: str) -> str | None:
    """GSM8K's final answer: what follows the last `####`, commas removed ("#### 1,234" -> "1234")."""
    matches = _GSM8K.findall(text)
    if not matches:
        return None
    answer = matches[-1].strip().replace(",", "")
    return answer or None


def strip_tags(text: str) -> str:
    """`text` with the four format tags removed but their content kept."""
    for tag in TAGS:
        text = text.replace(tag, " ")
    return text


FALLBACKS = ("none", "boxed", "last_number")


def extract_answer(completion: str, fallback: str = "none") -> str | None:
    """The answer block; when there is none, optionally a fallback over the tag-stripped text.

    fallback: "none" (strict, R1), "boxed" (last `\\boxed{}`), "last_number" (last number).
    """
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
    answer = answer_block(completion)
    if answer is not None or fallback == "none":
        return answer
    text = strip_tags(completion)
    return boxed(text) if fallback == "boxed" else last_number(text)


def summary_text(response: str) -> str:
    """The part of a response meant for the user, without the reasoning (what R1 judges helpfulness on,
    arXiv:2501.12948 section 2.3.4: "the final summary").

    The `<answer>` block when there is one valid block (see `answer_block`); else the text after the last
    `</think>`, tags removed; else, with a `<think>` never closed, "" (all of it is reasoning: no summary);
    else, with no think tags at all, the whole response, stripped.
    """
    block = answer_block(response)
    if block is not None:
        return block
    if THINK_CLOSE in response:
        return strip_tags(response[response.rindex(THINK_CLOSE) + len(THINK_CLOSE) :]).strip()
    if THINK_OPEN in response:
        return ""
    return response.strip()
