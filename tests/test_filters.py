"""Rejection-sampling filters (R1 section 2.3.3) on crafted samples, one rule at a time, then the pipeline."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from ponder.data.filters import (
    FILTERS,
    Sample,
    cap_per_prompt,
    code_in_reasoning,
    duplicate,
    long_paragraph,
    make_filter,
    malformed,
    mixed_language,
    normalize_response,
    reformat,
    run_pipeline,
    split_response,
    wrong_answer,
)
from ponder.rewards import REWARDS, Reference, Unscorable, register_reward

REF = Reference("5", "numeric")


def s(response: str, prompt_id: str = "p0", index: int = 0, ref: Reference | None = REF) -> Sample:
    return Sample(prompt_id, index, response, ref)


def good(reasoning: str = "Two plus three is five.", answer: str = "5", **kw) -> Sample:
    return s(f"<think>{reasoning}</think>\n<answer>{answer}</answer>", **kw)


if "always_unscorable" not in REWARDS:

    @register_reward("always_unscorable")
    def always_unscorable(completion: str, ref: Reference) -> float:
        raise Unscorable("verifier timed out")


def test_registered_filters():
    assert {
        "malformed",
        "wrong_answer",
        "mixed_language",
        "long_paragraph",
        "code_in_reasoning",
        "duplicate",
        "cap_per_prompt",
    } <= set(FILTERS)


# ------------------------------------------------------------------------------------ malformed


@pytest.mark.parametrize(
    "response",
    [
        "<think>r</think><answer>5</answer>",
        "  <think>\nr\n</think>\n\n<answer> 5 </answer>\n",
    ],
)
def test_malformed_keeps_think_then_answer(response):
    assert malformed(s(response)).keep


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        ("just 5", "</think> x0"),
        ("<think>r</think>5", "<answer> x0"),
        ("<think>r</think><answer>5</answer><answer>6</answer>", "<answer> x2"),
        ("<answer>5</answer><think>r</think>", "order"),
        ("<think> </think><answer>5</answer>", "empty block"),
        ("<think>r</think> so <answer>5</answer>", "text outside"),
    ],
)
def test_malformed_drops_and_says_why(response, reason):
    verdict = malformed(s(response))
    assert not verdict.keep and reason in verdict.reason


# ------------------------------------------------------------------------------------ wrong answer


def test_wrong_answer_uses_the_items_checker():
    assert wrong_answer(good(answer="5.0")).keep  # numeric checker: 5.0 == 5
    assert wrong_answer(good(answer="x = 5")).keep
    verdict = wrong_answer(good(answer="6"))
    assert not verdict.keep and "'6'" in verdict.reason and "'5'" in verdict.reason
    exact = Reference("Paris", "exact")
    assert wrong_answer(good(answer="paris.", ref=exact)).keep
    assert not wrong_answer(good(answer="Lyon", ref=exact)).keep


def test_wrong_answer_needs_the_answer_block_after_the_reasoning():
    assert not wrong_answer(s("<think>the answer is 5</think>")).keep
    assert not wrong_answer(s("<think><answer>5</answer></think>")).keep
    assert not wrong_answer(good(ref=None)).keep


def test_wrong_answer_drops_unscorable_samples():
    verdict = wrong_answer(good(), reward="always_unscorable")
    assert not verdict.keep and verdict.reason.startswith("unscorable")


def test_wrong_answer_routes_math_items_to_math_verify(monkeypatch):
    # math-verify itself is tested in test_math_reward.py; here, that "auto" picks it (without its workers)
    seen = []

    def fake_math_accuracy(completion: str, ref: Reference) -> float:
        seen.append(ref.answer)
        return 1.0 if "1/2" in completion else 0.0

    monkeypatch.setitem(REWARDS, "math_accuracy", fake_math_accuracy)
    half = Reference("\\frac{1}{2}", "math")
    assert wrong_answer(good(answer="1/2", ref=half)).keep
    verdict = wrong_answer(good(answer="1/3", ref=half))
    assert not verdict.keep and verdict.reason.startswith("math_accuracy = 0")
    assert seen == ["\\frac{1}{2}"] * 2
    assert wrong_answer(good(answer="5")).keep and len(seen) == 2  # numeric items do not reach it


# ------------------------------------------------------------------------------------ mixed language


def test_mixed_language_drops_chinese_sentences_in_english_reasoning():
    english = "First add two and three. That gives five, so the answer is five."
    assert mixed_language(good(english)).keep
    mixed = english + " 所以答案是五。"
    verdict = mixed_language(good(mixed))
    assert not verdict.keep and verdict.reason.startswith("reasoning")
    # 13 English words and 6 Chinese characters: 0.68 of the words are English
    assert mixed_language(good(mixed), threshold=0.6).keep


def test_mixed_language_checks_the_answer_and_skips_wordless_parts():
    verdict = mixed_language(good(answer="答案是五"))
    assert not verdict.keep and verdict.reason.startswith("answer")
    assert mixed_language(good(answer="答案是五"), parts="reasoning").keep
    assert mixed_language(good("2 + 3 = 5", answer="5")).keep  # "x = 3"-like text has no words to mix


def test_mixed_language_target_comes_from_the_item():
    zh = Reference("5", "numeric", {"language": "zh"})
    chinese = "二加三等于五。"
    assert mixed_language(good(chinese, ref=zh)).keep
    assert not mixed_language(good("Two plus three is five.", ref=zh)).keep
    assert mixed_language(good(chinese, ref=zh), language="en").keep is False


# ------------------------------------------------------------------------------------ long paragraph


def test_long_paragraph_by_characters_and_words():
    short = "word " * 30
    long = "word " * 500  # 2500 characters, 500 words in one paragraph
    assert long_paragraph(good(short)).keep
    verdict = long_paragraph(good(long))
    assert not verdict.keep and "2499 characters" in verdict.reason
    split = "\n\n".join(["word " * 100] * 5)  # the same words in paragraphs of 100
    assert long_paragraph(good(split)).keep
    assert not long_paragraph(good(split), max_chars=0, max_words=99).keep
    assert long_paragraph(good(split), max_chars=0, max_words=100).keep
    assert long_paragraph(good(long), max_chars=0).keep  # both limits off


def test_long_paragraph_splits_reasoning_from_answer():
    text = "a" * 1500
    assert long_paragraph(s(f"<think>{text}</think><answer>{text}</answer>")).keep


# ------------------------------------------------------------------------------------ code


@pytest.mark.parametrize(
    "reasoning",
    [
        "Let me compute.\n```python\nprint(2 + 3)\n```\nSo 5.",
        "Let me compute.\n~~~\n2 + 3\n~~~",
        "Let me compute.\n\n    x = 2\n    print(x + 3)\n\nSo 5.",
        "\n\tfor i in range(3):\n\t\tprint(i)\n",
    ],
)
def test_code_in_reasoning_drops_fenced_and_indented_blocks(reasoning):
    assert not code_in_reasoning(good(reasoning)).keep


@pytest.mark.parametrize(
    "reasoning",
    [
        "Two plus three: `2 + 3` is 5.",
        "A paragraph that wraps\n    onto an indented line\n    and another.",  # a continuation, not code
        "Steps:\n\n    - add two\n    - add three",  # a nested list
        "Only one line:\n\n    x = 5\n\nDone.",
    ],
)
def test_code_in_reasoning_keeps_prose(reasoning):
    assert code_in_reasoning(good(reasoning)).keep


def test_code_in_reasoning_ignores_the_answer_and_respects_switches():
    assert code_in_reasoning(good(answer="```\n5\n```")).keep
    fenced = good("```\nx\n```")
    assert code_in_reasoning(fenced, fenced=False).keep
    one_line = good("Look:\n\n    x = 5\n")
    assert not code_in_reasoning(one_line, min_indented_lines=1).keep
    assert code_in_reasoning(good("\n    a\n    b"), indented=False).keep


# ------------------------------------------------------------------------------------ duplicates and cap


def test_duplicate_catches_whitespace_and_case_variants_within_a_prompt():
    samples = [
        good("Two plus three is five.", index=0),
        good("two  plus\nthree is FIVE.", index=1),
        good("Two plus three is five!", index=2),  # different punctuation: kept
        good("Two plus three is five.", prompt_id="p1", index=0),  # another prompt
    ]
    verdicts = duplicate(samples)
    assert [v.keep for v in verdicts] == [True, False, True, True]
    assert verdicts[1].reason == "duplicate of sample 0"
    assert [v.keep for v in duplicate(samples, scope="all")] == [True, False, True, False]
    assert normalize_response(" A\tb \n C ") == "a b c"


def test_cap_per_prompt_prefers_the_shortest_or_the_first():
    samples = [
        good("a much longer line of reasoning", index=0),
        good("short", index=1),
        good("medium reasoning", index=2),
        good("tiny", prompt_id="p1", index=0),
        good("x", index=3),
    ]
    assert [v.keep for v in cap_per_prompt(samples, k=2)] == [False, True, False, True, True]
    assert [v.keep for v in cap_per_prompt(samples, k=2, prefer="first")] == [True, True, False, True, False]
    ties = [good("same", index=i) for i in range(3)]
    assert [v.keep for v in cap_per_prompt(ties, k=1)] == [True, False, False]


# ------------------------------------------------------------------------------------ reformat


def test_reformat_into_reasoning_then_summary():
    response = "<think>\n  Two plus three is five.\n</think>\n<answer> 5 </answer>"
    assert reformat(response) == "<think>\nTwo plus three is five.\n</think>\n\n5"
    assert (
        reformat(response, "{reasoning}\n\n**Answer:** {answer}")
        == "Two plus three is five.\n\n**Answer:** 5"
    )
    latex = "<think>so $\\frac{1}{2}$</think><answer>\\boxed{\\frac{1}{2}}</answer>"
    assert reformat(latex, "{reasoning} => {answer}") == "so $\\frac{1}{2}$ => \\boxed{\\frac{1}{2}}"
    braces = "<think>keep {answer} as written</think><answer>5</answer>"
    assert reformat(braces, "{reasoning} -> {answer}") == "keep {answer} as written -> 5"
    assert split_response("no tags") is None
    with pytest.raises(ValueError, match="cannot reformat"):
        reformat("<think>r</think>")


# ------------------------------------------------------------------------------------ make_filter, pipeline


def test_make_filter_checks_names_parameters_and_values():
    f = make_filter("mixed_language", threshold=0.5)
    assert f.name == "mixed_language" and f.params == {"threshold": 0.5}
    with pytest.raises(ValueError, match="unknown filter"):
        make_filter("no_such_filter")
    with pytest.raises(ValueError, match="unknown parameter.*threshhold"):
        make_filter("mixed_language", threshhold=0.5)
    with pytest.raises(ValueError, match="threshold = 1.5"):
        make_filter("mixed_language", threshold=1.5)
    with pytest.raises(ValueError, match="language = 'xx'"):
        make_filter("mixed_language", language="xx")
    with pytest.raises(ValueError, match="k = 0"):
        make_filter("cap_per_prompt", k=0)
    with pytest.raises(ValueError, match="reward = 'nope'"):
        make_filter("wrong_answer", reward="nope")


def _mixed_batch() -> list[Sample]:
    return [
        good(index=0),  # kept
        s("no tags", index=1),  # malformed
        good(answer="6", index=2),  # wrong
        good("Two plus three is five. 答案是五。", index=3),  # mixed language
        good("```\nprint(5)\n```", answer="6", index=4),  # code and wrong: the earlier filter counts it
        good("TWO plus three is five.", index=5),  # duplicate of 0
        good("Three plus two is five.", index=6),  # kept, then over the cap
    ]


def test_pipeline_counts_each_drop_under_the_first_filter_in_order():
    names = ["malformed", "wrong_answer", "mixed_language", "code_in_reasoning", "duplicate"]
    result = run_pipeline(_mixed_batch(), [make_filter(n) for n in names] + [make_filter("cap_per_prompt")])
    assert result.removed == {
        "malformed": 1,
        "wrong_answer": 2,
        "mixed_language": 1,
        "code_in_reasoning": 0,
        "duplicate": 1,
        "cap_per_prompt": 1,
    }
    assert list(result.removed) == [*names, "cap_per_prompt"]
    assert [x.index for x in result.kept] == [0]
    assert {(r.sample.index, r.filter) for r in result.rejected} == {
        (1, "malformed"),
        (2, "wrong_answer"),
        (4, "wrong_answer"),
        (3, "mixed_language"),
        (5, "duplicate"),
        (6, "cap_per_prompt"),
    }
    swapped = ["malformed", "code_in_reasoning", "wrong_answer"]
    removed = run_pipeline(_mixed_batch(), [make_filter(n) for n in swapped]).removed
    assert removed == {"malformed": 1, "code_in_reasoning": 1, "wrong_answer": 1}


def test_pipeline_with_a_thread_pool_gives_the_same_result():
    filters = [make_filter(n) for n in ("malformed", "wrong_answer", "mixed_language", "duplicate")]
    plain = run_pipeline(_mixed_batch(), filters)
    with ThreadPoolExecutor(4) as pool:
        threaded = run_pipeline(_mixed_batch(), filters, pool.map)
    assert threaded.removed == plain.removed and threaded.kept == plain.kept
    with pytest.raises(ValueError, match="twice"):
        run_pipeline([], [make_filter("malformed"), make_filter("malformed")])
