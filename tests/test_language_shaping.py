"""Language consistency (R1 section 2.3.2), repetition penalty and cosine length reward (Yeo et al. 2025)."""

from __future__ import annotations

import importlib.util
import math

import pytest

from ponder.rewards import REWARDS, Reference
from ponder.rewards.language import (
    _classify,
    _langid_identifier,
    chain_of_thought,
    make_language_consistency,
    split_words,
    target_share,
)
from ponder.rewards.shaping import (
    R_CORRECT_0,
    R_CORRECT_L,
    R_EXCEED,
    R_WRONG_0,
    R_WRONG_L,
    cosine_schedule,
    make_cosine_length,
    make_repetition_penalty,
    ngram_repetition,
)

EN = Reference("7", meta={"language": "en"})
ZH = Reference("7", meta={"language": "zh"})
ENGLISH_COT = (
    "<think>First add three and four. That gives seven, so the answer is 7.</think><answer>7</answer>"
)
CHINESE_COT = "<think>首先把三和四相加，得到七。</think><answer>7</answer>"
script_only = make_language_consistency("script")


def test_registered_names():
    for name in ("language_consistency", "repetition_penalty", "cosine_length"):
        assert name in REWARDS


@pytest.mark.parametrize("reward", [REWARDS["language_consistency"], script_only])
def test_english_cot_with_english_target_is_one(reward):
    assert reward(ENGLISH_COT, EN) == 1.0
    assert reward(ENGLISH_COT, Reference("7")) == 1.0  # target defaults to English


def test_chinese_cot_with_english_target_is_zero_and_with_chinese_target_one():
    assert script_only(CHINESE_COT, EN) == 0.0
    assert script_only(CHINESE_COT, ZH) == 1.0
    assert REWARDS["language_consistency"](CHINESE_COT, ZH) == 1.0


def test_mixed_cot_scores_the_proportion():
    # 4 English words + 4 Han characters (each a word): half in each language.
    completion = "<think>add three and four 三和四加</think><answer>7</answer>"
    assert script_only(completion, EN) == pytest.approx(0.5)
    assert script_only(completion, ZH) == pytest.approx(0.5)


def test_only_the_think_block_counts():
    completion = "<think>three plus four</think><answer>答案是七</answer>"
    assert script_only(completion, EN) == 1.0


def test_no_think_block_scores_the_whole_response_and_empty_think_is_zero():
    assert script_only("seven is the answer", EN) == 1.0
    assert script_only("<think></think><answer>7</answer>", EN) == 0.0
    assert script_only("<think> 3 + 4 = 7 </think><answer>7</answer>", EN) == 0.0  # no words at all
    assert script_only("", EN) == 0.0


def test_chain_of_thought_handles_prefilled_and_unclosed_think():
    assert chain_of_thought("reasoning</think><answer>7</answer>") == "reasoning"
    assert chain_of_thought("<think>still thinking") == "still thinking"


def test_split_words_by_script():
    words = split_words("Hello, мир! 你好 x=3 héllo")
    assert [(w.text, w.script) for w in words] == [
        ("Hello", "latin"),
        ("мир", "cyrillic"),
        ("你", "han"),
        ("好", "han"),
        ("x", "latin"),
        ("héllo", "latin"),
    ]
    # A Devanagari vowel sign (combining mark) stays inside its word.
    assert [w.text for w in split_words("नमस्ते दुनिया")] == ["नमस्ते", "दुनिया"]


def test_other_scripts_and_japanese():
    assert target_share("Привет мир hello", "ru") == pytest.approx(2 / 3)
    assert target_share("これは日本語です", "ja") == 1.0
    assert target_share("مرحبا بالعالم", "ar") == 1.0


def test_unknown_target_language_is_an_error():
    with pytest.raises(ValueError, match="unknown target language"):
        script_only(ENGLISH_COT, Reference("7", meta={"language": "xx"}))


def test_unknown_identifier_is_an_error():
    with pytest.raises(ValueError, match="identifier"):
        make_language_consistency("fasttext")


@pytest.mark.skipif(importlib.util.find_spec("langid") is None, reason="langid not installed")
def test_langid_separates_latin_languages():
    reward = make_language_consistency("langid")
    french = "<think>Je dois additionner trois et quatre pour obtenir la somme.</think><answer>7</answer>"
    assert reward(french, EN) == 0.0
    assert script_only(french, EN) == 1.0  # script detection alone cannot tell French from English
    assert reward(ENGLISH_COT, EN) == 1.0
    assert reward("<think>So x = 3.</think>", EN) == 1.0  # too short to judge: benefit of the doubt


@pytest.mark.skipif(importlib.util.find_spec("langid") is None, reason="langid not installed")
def test_sparse_classify_matches_langid():
    identifier = _langid_identifier()
    for text in ("Let me add the numbers", "Je dois calculer la somme", "So x equals 3", "x"):
        language, prob = identifier.classify(text)
        assert _classify(identifier, text) == (language, pytest.approx(prob, abs=1e-9))


def test_repetition_penalty_strongly_negative_for_loops_and_zero_for_prose():
    penalty = REWARDS["repetition_penalty"]
    assert penalty("the cat sat " * 50, EN) < -0.9
    prose = "First add three and four to get seven. Then check the sum again by counting up from four."
    assert penalty(prose, EN) == 0.0
    assert penalty("too short", EN) == 0.0


def test_repetition_share_by_hand_and_factory():
    # "a b a b a": bigrams ab ba ab ba -> 2 distinct of 4 -> 0.5 repeated.
    assert ngram_repetition("a b a b a", n=2) == pytest.approx(0.5)
    assert make_repetition_penalty(n=2, max_penalty=-0.5)("a b a b a", EN) == pytest.approx(-0.25)
    with pytest.raises(ValueError):
        make_repetition_penalty(n=0)
    with pytest.raises(ValueError):
        make_repetition_penalty(max_penalty=1.0)


def _completion(words: int, answer: str) -> str:
    """A completion of exactly `words` (>= 2) whitespace words whose answer block holds `answer`."""
    return "<think>" + " ".join(["step"] * (words - 1)) + "</think> <answer>" + answer + "</answer>"


def test_cosine_length_endpoints_match_paper_defaults():
    reward = make_cosine_length(max_len=100)
    assert cosine_schedule(0, 100, R_CORRECT_0, R_CORRECT_L) == pytest.approx(R_CORRECT_0)
    assert cosine_schedule(0, 100, R_WRONG_0, R_WRONG_L) == pytest.approx(R_WRONG_0)
    # Two words is the shortest completion here ("<think>step</think>" and the answer): near length 0.
    assert reward(_completion(2, "7"), EN) == pytest.approx(R_CORRECT_0, abs=0.05)
    assert reward(_completion(100, "7"), EN) == pytest.approx(R_CORRECT_L)
    assert reward(_completion(2, "8"), EN) == pytest.approx(R_WRONG_0, abs=0.05)
    assert reward(_completion(100, "8"), EN) == pytest.approx(R_WRONG_L)
    assert reward(_completion(101, "7"), EN) == R_EXCEED
    assert (R_CORRECT_0, R_CORRECT_L, R_WRONG_0, R_WRONG_L, R_EXCEED) == (2.0, 1.0, -10.0, 0.0, -10.0)


def test_cosine_length_monotonic_in_length():
    reward = make_cosine_length(max_len=100)
    lengths = range(2, 101, 7)
    correct = [reward(_completion(n, "7"), EN) for n in lengths]
    wrong = [reward(_completion(n, "8"), EN) for n in lengths]
    assert all(
        a > b for a, b in zip(correct[:-1], correct[1:], strict=True)
    )  # shorter right answers earn more
    assert all(
        a < b for a, b in zip(wrong[:-1], wrong[1:], strict=True)
    )  # longer wrong answers are punished less
    assert min(correct) > max(wrong)


def test_cosine_length_midpoint_and_meta_max_len():
    reward = REWARDS["cosine_length"]
    ref = Reference("7", meta={"max_len": 10})
    # Half-way the cosine is at the mean of the endpoints.
    assert reward(_completion(5, "7"), ref) == pytest.approx((R_CORRECT_0 + R_CORRECT_L) / 2)
    assert reward(_completion(5, "8"), ref) == pytest.approx((R_WRONG_0 + R_WRONG_L) / 2)
    assert math.isclose(reward(_completion(11, "7"), ref), R_EXCEED)
