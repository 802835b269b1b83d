"""Programmatic cold-start chains of thought: right answers, checked reasoning, the R1 format."""

import json
import random
import re

import pytest

from ponder.config import ConfigError
from ponder.rewards import score_all
from ponder.stages.cot_data import CotDataConfig, run_cot_data, worked_solution


def test_worked_solutions_reach_the_value_of_random_expressions():
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(2, 4)
        nums = [rng.randint(0, 999) for _ in range(n)]
        ops = [rng.choice("+-*") for _ in range(n - 1)]
        expr = str(nums[0]) + "".join(f" {o} {x}" for o, x in zip(ops, nums[1:], strict=True))
        reasoning, value = worked_solution(expr)
        assert value == eval(expr)  # noqa: S307 - digits and + - * only
        assert "Wait, let me check" in reasoning


def test_column_addition_shows_the_carries():
    reasoning, value = worked_solution("47 + 38")
    assert value == 85
    assert "7 + 8 = 15, write 5, carry 1" in reasoning and "4 + 3 + 1 (carry) = 8" in reasoning


def test_stage_writes_verified_r1_format_rows(tmp_path):
    summary = run_cot_data(CotDataConfig(task={"digits": 2, "ops": "+*"}, count=50), tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "data.jsonl").read_text().splitlines()]
    assert summary["rows"] == len(rows) == 50
    from ponder.data.tasks import Arithmetic, Reference

    for r in rows:
        assert r["response"].startswith("<think>") and r["response"].endswith(
            f"<answer>{r['answer']}</answer>"
        )
    checker = Arithmetic().checker
    weights = {"accuracy": 1.0, "format": 1.0}
    scores = [score_all(r["response"], Reference(r["answer"], checker), weights) for r in rows]
    assert all(s["accuracy"] == 1.0 and s["format"] == 1.0 for s in scores)


def test_bad_config_is_named():
    with pytest.raises(ConfigError, match="count"):
        CotDataConfig(count=0)
    with pytest.raises(ConfigError, match="template"):
        CotDataConfig(template="{reasoning}")
    with pytest.raises(ConfigError, match="cot_data.task"):
        CotDataConfig(task={"digits": 0})


def test_gsm8k_solutions_become_r1_rows(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(
        json.dumps({"question": "Q1?", "answer": "She has 48/2 = <<48/2=24>>24.\n#### 1,024"})
        + "\n"
        + json.dumps({"question": "Q2?", "answer": "no final line"})
        + "\n"
    )
    summary = run_cot_data(CotDataConfig(gsm8k=str(path), count=1), tmp_path / "out")
    (row,) = [json.loads(x) for x in (tmp_path / "out" / "data.jsonl").read_text().splitlines()]
    assert summary["rows"] == 1
    assert row["response"] == "<think>She has 48/2 = 24.</think>\n<answer>1024</answer>"
    from ponder.data.files import DatasetError

    with pytest.raises(DatasetError, match="g.jsonl:2"):
        run_cot_data(CotDataConfig(gsm8k=str(path), count=5), tmp_path / "out2")


def _equalities_hold(line: str) -> int:
    """Checks every 'E1 = E2 = ...' chain (integers, + and *) in a worked line; returns how many."""
    checked = 0
    for clause in line.rstrip(".").replace(", so ", "; ").split("; "):
        sides = clause.split(" = ")
        if len(sides) < 2 or not all(re.fullmatch(r"[\d +*]+", side) for side in sides):
            continue
        values = {eval(side) for side in sides}  # noqa: S307 - digits, + and * only
        assert len(values) == 1, f"{clause!r} does not hold"
        checked += 1
    return checked


def test_long_multiplication_steps_are_each_true_and_end_in_the_product():
    rng = random.Random(7)
    for _ in range(300):
        a, b = rng.randint(0, 999), rng.randint(0, 99)
        reasoning, value = worked_solution(f"{a} * {b}")
        assert value == a * b
        lines = reasoning.splitlines()
        assert sum(_equalities_hold(line) for line in lines) >= 1
        # the partial-product sums are written column by column, and the check recomputes the other way
        if a >= 10 and b >= 10 and b % 10:
            assert any(line.startswith("ones: ") for line in lines)
        assert lines[-1].startswith("Wait, let me check") and lines[-1].endswith("Correct.")
        assert f"= {a * b}" in lines[-1] or f"{a * b} /" in lines[-1]
