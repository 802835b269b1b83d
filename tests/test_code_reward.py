"""Code rewards: extraction, HumanEval-style and stdio scoring, reward hacks scored 0, real HumanEval.

Run: python -m pytest -q tests/test_code_reward.py
(the HumanEval test needs /work/shared/data/humaneval.jsonl, else it is skipped)
"""

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ponder.rewards import REWARDS, Reference, Unscorable, score_all
from ponder.rewards import code as code_mod
from ponder.rewards.code import code_score, extract_program, outputs_match, split_check_cases
from ponder.rewards.sandbox import Sandbox

HUMANEVAL = Path("/work/shared/data/humaneval.jsonl")

ADD = Reference(
    answer="",
    checker="code",
    meta={
        "prompt": "def add(a, b):\n    '''Sum of a and b.'''\n",
        "entry_point": "add",
        "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n"
        "    assert candidate(2, 2) == 4\n    assert candidate(0, 5) == 5\n"
        "    assert abs(candidate(1, 1) - 2) < 1e-9\n",
    },
)
SUM_STDIO = Reference(
    answer="",
    checker="code",
    meta={"cases": [{"input": "1 2\n", "output": "3\n0\n"}, {"input": "5 5\n", "output": "10\n0\n"}]},
)


def fenced(code: str) -> str:
    return f"<think>easy</think>\n<answer>\n```python\n{code}\n```\n</answer>"


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("<think>x</think><answer>```python\nprint(1)\n```</answer>", "print(1)\n"),
        ("<think>x</think><answer>print(2)</answer>", "print(2)"),
        ("text ```python\nprint(1)\n``` more ```py\nprint(3)\n```", "print(3)\n"),
        ("no code here", None),
    ],
)
def test_extract_program(completion, expected):
    assert extract_program(completion) == expected


def test_split_check_cases_counts_assert_statements():
    source, n = split_check_cases(ADD.meta["test"])
    assert n == 4 and source.count("_ponder_results.append(True)") == 4


def test_outputs_match_is_whole_output_up_to_trailing_space():
    assert outputs_match("3  \n0\n\n", "3\n0")
    assert not outputs_match("3\n", "3\n0\n")


def test_humaneval_style_full_and_partial_credit():
    assert REWARDS["code_pass"](fenced("def add(a, b):\n    return a + b"), ADD) == 1.0
    assert REWARDS["code_pass"](fenced("    return a + b"), ADD) == 1.0  # a body continuing the prompt
    wrong = fenced("def add(a, b):\n    return a * b")  # passes 1 of 4: add(2, 2)
    assert REWARDS["code_partial"](wrong, ADD) == 0.25
    assert REWARDS["code_pass"](wrong, ADD) == 0.0
    assert REWARDS["code_pass"]("no program", ADD) == 0.0


def test_stdio_cases():
    good = fenced("a, b = map(int, input().split())\nprint(a + b)\nprint(0)")
    assert REWARDS["code_pass"](good, SUM_STDIO) == 1.0
    half = fenced("a, b = map(int, input().split())\nprint(3)\nprint(0)")
    assert REWARDS["code_partial"](half, SUM_STDIO) == 0.5
    crash_after_output = fenced(
        "a, b = map(int, input().split())\nprint(a + b)\nprint(0)\nraise SystemExit(1)"
    )
    assert REWARDS["code_partial"](crash_after_output, SUM_STDIO) == 0.0


HACKS = {
    "exit before tests": "import sys\ndef add(a, b):\n    return 0\nsys.exit(0)",
    "os._exit before tests": "import os\ndef add(a, b):\n    return 0\nos._exit(0)",
    "always-equal result": (
        "class Eq(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n"
        "def add(a, b):\n    return Eq(0)"
    ),
    "always-equal plain object": (
        "class Eq:\n    def __eq__(self, other):\n        return True\ndef add(a, b):\n    return Eq()"
    ),
    "patched builtin": "import builtins\nbuiltins.abs = lambda x: 0\ndef add(a, b):\n    return 0",
    "rebound results list by name": (
        "class L(list):\n    def append(self, x):\n        super().append(True)\n_ponder_results = L()\n"
        "def add(a, b):\n    return 0"
    ),
    "fake nonce line": "def add(a, b):\n    return 0\nprint('deadbeef 1111')",
}


@pytest.mark.parametrize("name", sorted(HACKS))
def test_reward_hacks_score_zero_on_humaneval(name):
    completion = fenced(HACKS[name])
    assert REWARDS["code_partial"](completion, ADD) == 0.0, name
    assert REWARDS["code_pass"](completion, ADD) == 0.0, name


@pytest.mark.parametrize(
    "program",
    [
        "print(3)",  # only the first expected line
        "import sys\nsys.exit(0)",
        "print('3\\n0')\nimport os\nos._exit(0) if False else None\nwhile True: pass",  # right output, hangs
    ],
)
def test_reward_hacks_score_zero_on_stdio(program):
    ref = Reference(answer="", checker="code", meta={"cases": [{"input": "1 2\n", "output": "3\n0\n"}]})
    assert code_score(fenced(program), ref, partial=True, limits=code_mod.Limits(wall_s=1.0)) == 0.0


def test_missing_tests_are_a_clear_error():
    with pytest.raises(ValueError, match="meta"):
        REWARDS["code_pass"](fenced("print(1)"), Reference(answer="1"))


def test_sandbox_failure_is_unscorable(monkeypatch):
    broken = Sandbox("fallback", cgroup="none")
    broken.python = "/nonexistent/python3"
    monkeypatch.setattr("ponder.rewards.sandbox.default_sandbox", lambda: broken)
    with pytest.raises(Unscorable):
        REWARDS["code_pass"](fenced("def add(a, b):\n    return a + b"), ADD)
    assert math.isnan(score_all(fenced("def add(a, b):\n    return a + b"), ADD, {"code_pass": 1.0})["total"])


def _humaneval_items() -> list[dict]:
    if not HUMANEVAL.exists():
        pytest.skip(f"{HUMANEVAL} not present (164 HumanEval problems: task_id, prompt, test, entry_point)")
    return [json.loads(line) for line in HUMANEVAL.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_humaneval_canonical_solutions_pass_and_corrupted_ones_fail():
    items = _humaneval_items()
    refs = [Reference(answer="", checker="code", meta=item) for item in items]
    good = [fenced(item["canonical_solution"]) for item in items]
    bad = [fenced("    return None\n") for _ in items]
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        good_scores = list(pool.map(REWARDS["code_pass"], good, refs))
        bad_scores = list(pool.map(REWARDS["code_pass"], bad, refs))
    rate = 2 * len(items) / (time.monotonic() - start)
    print(f"\nsandboxed HumanEval executions per second (2 workers): {rate:.1f}")
    assert [i["task_id"] for i, s in zip(items, good_scores, strict=True) if s != 1.0] == []
    assert [i["task_id"] for i, s in zip(items, bad_scores, strict=True) if s != 0.0] == []
