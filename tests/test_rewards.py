"""Rewards, extraction, checkers and the countdown parser on tables of cases, including reward hacks.

Run: python -m pytest -q tests/test_rewards.py
"""

import pytest

from ponder.rewards import CHECKERS, REWARDS, Reference, get_reward, score_all
from ponder.rewards.base import register_reward, weighted_sum
from ponder.rewards.checkers import parse_number
from ponder.rewards.countdown import CountdownError, check_countdown, parse_countdown
from ponder.rewards.extract import answer_block, boxed, extract_answer, gsm8k_final, last_number

GOOD = "<think>37 + 45 = 82</think>\n<answer>82</answer>"


@pytest.mark.parametrize(
    "completion, expected",
    [
        (GOOD, "82"),
        ("<think>x</think><answer> 82 </answer>", "82"),
        ("reasoning without think tags <answer>82</answer>", "82"),
        ("<think>a</think><answer>1</answer><answer>82</answer>", None),  # two answer blocks
        ("<think>a</think><answer>   </answer>", None),  # empty answer
        ("<think>a <answer>82</answer></think> done", None),  # answer only inside think
        ("<answer>82</answer><think>a</think>", None),  # answer before think
        ("<think>a <answer>82</answer>", None),  # think never closed
        ("<think>a</think><answer>82", None),  # missing </answer>
        ("<think>a</think>82</answer>", None),  # missing <answer>
        ("<think>a</think></answer>82<answer>", None),  # tags out of order
        ("<think>a</think>no answer at all", None),
    ],
)
def test_answer_block(completion, expected):
    assert answer_block(completion) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so the answer is 42.", "42"),
        ("costs $1,234,567 total", "1234567"),
        ("it is -3", "-3"),
        ("pi is about 3.14.", "3.14"),
        ("10-3", "3"),  # a minus glued to a number is subtraction, not a sign
        ("no digits", None),
    ],
)
def test_last_number(text, expected):
    assert last_number(text) == expected


def test_boxed_gsm8k_and_fallbacks():
    assert boxed(r"first \boxed{1} then \boxed{\frac{1}{2}} end") == r"\frac{1}{2}"
    assert boxed(r"\boxed{unclosed {") is None
    assert boxed("nothing") is None
    assert gsm8k_final("work\n#### 1,234") == "1234"
    assert gsm8k_final("no marker 5") is None
    text = r"<think>so \boxed{7} or 9</think> answer 9"
    assert extract_answer(text) is None
    assert extract_answer(text, fallback="last_number") == "9"
    assert extract_answer(text, fallback="boxed") == "7"
    assert extract_answer(GOOD, fallback="last_number") == "82"
    with pytest.raises(ValueError):
        extract_answer(text, fallback="first_number")


@pytest.mark.parametrize(
    "answer, reference, expected",
    [
        ("1,234", "1234", True),
        ("$5", "5", True),
        ("5 dollars", "5", True),
        ("50%", "50", True),
        ("3/4", "0.75", True),
        (r"\frac{3}{4}", "0.75", True),
        ("-3", "-3", True),
        ("x = -3", "-3", True),
        ("-3", "3", False),
        ("0.3333333", "1/3", True),  # within 1e-6 relative
        ("0.333", "1/3", False),
        ("72.", "72", True),
        ("1234", "1,235", False),
        ("Paris", "paris", True),  # not numbers: normalised string compare
        ("5 and 6", "5", False),
    ],
)
def test_numeric_checker(answer, reference, expected):
    assert CHECKERS["numeric"](answer, Reference(reference)) is expected


def test_parse_number_rejects_non_numbers():
    assert parse_number("12abc3") is None
    assert parse_number("") is None
    assert parse_number("1/0") is None


@pytest.mark.parametrize(
    "answer, reference, expected",
    [("  Hello   World. ", "hello world", True), ("$x^2$", "x^2", True), ("yes", "no", False)],
)
def test_exact_checker(answer, reference, expected):
    assert CHECKERS["exact"](answer, Reference(reference, "exact")) is expected


NUMBERS, TARGET = [3, 7, 12], 33


@pytest.mark.parametrize(
    "equation, expected",
    [
        ("3 * 7 + 12", True),
        ("(3 * 7) + 12 = 33", True),
        ("12 + 7 * 3", True),
        ("3 × 7 + 12", True),  # typographic times
        ("3 * 7 + 12 + 3 - 3", False),  # reuses 3
        ("3 * 7 + 7 + 5", False),  # reuses 7, uses a number not given
        ("3 * 11", False),  # missing numbers
        ("3 * 7 + 12 + 0", False),  # extra number
        ("3 * 7 - 12", False),  # wrong value
        ("12 / (7 - 7) + 3", False),  # division by zero (and reuse)
        ("3.0 * 7 + 12", False),  # non-integer literal
        ("-3 + 7 + 12 + 17", False),  # unary minus
        ("abs(3) * 7 + 12", False),  # function call
        ("x * 7 + 12", False),  # name
        ("(3).real * 7 + 12", False),  # attribute access
        ("__import__('os').system('true')", False),
        ("9 ** 9 ** 9", False),  # ** is not allowed (and would never finish)
        ("3 * 7 + 12 == 33", False),
        ("1" * 250, False),  # over the length limit
        ("", False),
    ],
)
def test_check_countdown(equation, expected):
    assert check_countdown(equation, NUMBERS, TARGET) is expected


def test_countdown_exact_fractions_and_errors():
    value, literals = parse_countdown("(6 / 4) * 2")
    assert value == 3 and literals == [6, 4, 2]
    assert check_countdown("6 / 4 * 2", [2, 4, 6], 3)
    for bad in ["1 / 0", "0x10 + 1", "2 ** 3", "[1, 2]", "'a'"]:
        with pytest.raises(CountdownError):
            parse_countdown(bad)
    assert CHECKERS["countdown"]("3*7+12", Reference("33", "countdown", {"numbers": NUMBERS, "target": 33}))


def test_countdown_pathological_input_is_handled():
    assert check_countdown("(" * 99 + "1" + ")" * 99, [1], 1)  # deep but within the length limit
    assert not check_countdown("-" * 150 + "1", [1], 1)  # chained unary minus
    assert check_countdown("+".join(["1"] * 100), [1] * 100, 100)


ACC_REF = Reference("82")


@pytest.mark.parametrize(
    "completion, accuracy, lenient, fmt, tags",
    [
        (GOOD, 1.0, 1.0, 1.0, 1.0),
        ("  <think>t</think>\n\n<answer>82</answer>\n", 1.0, 1.0, 1.0, 1.0),
        ("<think>t</think><answer>81</answer>", 0.0, 0.0, 1.0, 1.0),
        # two blocks are a hedge: an <answer> tag without one valid block gets nothing, not the last number
        ("<think>t</think><answer>81</answer><answer>82</answer>", 0.0, 0.0, 0.0, 0.5),
        ("<think>t</think><answer>82</answer><answer>81</answer>", 0.0, 0.0, 0.0, 0.5),
        ("<think>t</think><answer> </answer>", 0.0, 0.0, 0.0, 1.0),
        ("<think>the answer is <answer>82</answer></think>", 0.0, 0.0, 0.0, 1.0),
        ("<answer>82</answer><think>t</think>", 0.0, 0.0, 0.0, 1.0),
        ("<think>t<answer>82", 0.0, 0.0, 0.0, 0.5),
        ("the answer is 82.", 0.0, 0.5, 0.0, 0.0),
        ("<think>t</think><answer>82</answer> extra text", 1.0, 1.0, 0.0, 1.0),
        ("<think> </think><answer>82</answer>", 1.0, 1.0, 0.0, 1.0),  # empty think
        ("<think>t</think><think>u</think><answer>82</answer>", 1.0, 1.0, 0.0, 0.5),
        ("preamble <think>t</think><answer>82</answer>", 1.0, 1.0, 0.0, 1.0),
        ("<think>82</think><answer>81</answer>", 0.0, 0.0, 1.0, 1.0),  # wrong block: no fallback
    ],
)
def test_rewards_table(completion, accuracy, lenient, fmt, tags):
    got = {
        name: REWARDS[name](completion, ACC_REF)
        for name in ["accuracy", "accuracy_lenient", "format", "tags"]
    }
    assert got == {"accuracy": accuracy, "accuracy_lenient": lenient, "format": fmt, "tags": tags}


def test_accuracy_uses_the_reference_checker():
    ref = Reference("33", "countdown", {"numbers": NUMBERS, "target": 33})
    assert REWARDS["accuracy"]("<think>t</think><answer>12 + 3 * 7</answer>", ref) == 1.0
    assert REWARDS["accuracy"]("<think>t</think><answer>33</answer>", ref) == 0.0
    with pytest.raises(ValueError, match="unknown checker"):
        REWARDS["accuracy"](GOOD, Reference("82", "numerik"))


def test_registry_errors_and_weighted_sum():
    with pytest.raises(ValueError, match="did you mean 'accuracy'"):
        get_reward("acuracy")
    with pytest.raises(ValueError, match="already registered"):
        register_reward("format")(lambda completion, ref: 0.0)
    assert weighted_sum({"a": 1.0, "b": 0.5}, {"a": 2.0, "b": -1.0}) == 1.5
    with pytest.raises(KeyError):
        weighted_sum({"a": 1.0}, {"b": 1.0})
    scores = score_all("<think>t</think><answer>81</answer>", ACC_REF, {"accuracy": 1.0, "format": 0.5})
    assert scores == {"accuracy": 0.0, "format": 1.0, "total": 0.5}
