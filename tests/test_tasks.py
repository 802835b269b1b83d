"""Generated tasks: seed determinism, rank sharding, answers that check, registry errors.

Run: python -m pytest -q tests/test_tasks.py
"""

import itertools
import re

import pytest

from ponder.data import TASKS, Arithmetic, Countdown, Linear, build_task
from ponder.rewards import CHECKERS
from ponder.rewards.countdown import check_countdown

GENERATORS = [Arithmetic(digits=3, ops="+-*", num_operands=3), Countdown(num_numbers=4), Linear()]


def take(task, n, seed=0, rank=0, world=1):
    return list(itertools.islice(task.items(seed, rank, world), n))


@pytest.mark.parametrize("task", GENERATORS, ids=lambda t: t.name)
def test_same_seed_same_items_different_seed_differs(task):
    assert take(task, 50, seed=1) == take(task, 50, seed=1)
    assert [i.prompt for i in take(task, 50, seed=1)] != [i.prompt for i in take(task, 50, seed=2)]
    assert len({i.id for i in take(task, 50, seed=1)}) == 50


@pytest.mark.parametrize("task", GENERATORS, ids=lambda t: t.name)
@pytest.mark.parametrize("world", [2, 3])
def test_rank_sharding_partitions_the_single_stream(task, world):
    single = take(task, 12 * world, seed=5)
    shards = [take(task, 12, seed=5, rank=r, world=world) for r in range(world)]
    for r, shard in enumerate(shards):
        assert shard == single[r::world]
    union = [item for group in zip(*shards, strict=True) for item in group]
    assert union == single


def test_bad_rank_is_an_error():
    with pytest.raises(ValueError, match="rank"):
        next(Linear().items(0, rank=2, world=2))


def test_arithmetic_answers_follow_precedence():
    for item in take(Arithmetic(digits=2, ops="+-*", num_operands=4), 200):
        expression = re.fullmatch(r"What is (.+)\?", item.prompt).group(1)
        tokens = expression.split()
        # independent check: fold products first, then left-to-right sums
        terms, sign = [], 1
        product = int(tokens[0])
        for op, operand in zip(tokens[1::2], tokens[2::2], strict=True):
            if op == "*":
                product *= int(operand)
            else:
                terms.append(sign * product)
                sign, product = (1 if op == "+" else -1), int(operand)
        terms.append(sign * product)
        assert int(item.ref.answer) == sum(terms), item.prompt
        assert CHECKERS[item.ref.checker](item.ref.answer, item.ref)


def test_arithmetic_digit_knobs():
    for item in take(Arithmetic(digits=3, min_digits=3), 100):
        a, b = map(int, re.findall(r"\d+", item.prompt))
        assert 100 <= a <= 999 and 100 <= b <= 999


def test_countdown_targets_are_solvable_by_construction():
    task = Countdown(num_numbers=4, max_number=25)
    for item in take(task, 300, seed=3):
        meta = item.ref.meta
        assert item.ref.checker == "countdown" and item.ref.answer == str(meta["target"])
        assert isinstance(meta["target"], int) and meta["target"] > 0
        assert len(meta["numbers"]) == 4 and all(1 <= n <= 25 for n in meta["numbers"])
        assert check_countdown(meta["solution"], meta["numbers"], meta["target"]), meta
        assert CHECKERS["countdown"](meta["solution"] + f" = {meta['target']}", item.ref)
        assert str(meta["numbers"]) in item.prompt and str(meta["target"]) in item.prompt
        assert meta["solution"] not in item.prompt


def test_countdown_ops_knob_restricts_construction():
    for item in take(Countdown(num_numbers=3, ops="+"), 50):
        assert item.ref.meta["target"] == sum(item.ref.meta["numbers"])


def test_linear_solutions_check():
    for item in take(Linear(max_coef=5, max_solution=9), 300, seed=7):
        m = re.fullmatch(r"Solve for x: (-?\d*)x(?: ([+-]) (\d+))? = (-?\d+)\.", item.prompt)
        assert m, item.prompt
        a = {"": 1, "-": -1}.get(m.group(1)) or int(m.group(1))
        b = 0 if m.group(2) is None else int(m.group(3)) * (1 if m.group(2) == "+" else -1)
        x = int(item.ref.answer)
        assert a * x + b == int(m.group(4)) and a != 0 and abs(a) <= 5 and abs(x) <= 9
        assert CHECKERS["numeric"](f"x = {x}", item.ref)


def test_build_task_and_errors():
    assert set(TASKS) >= {"arithmetic", "countdown", "linear", "file"}
    task = build_task("countdown", num_numbers=5)
    assert isinstance(task, Countdown) and task.num_numbers == 5 and "5 numbers" in task.describe()
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['num_number'\].*num_numbers"):
        build_task("countdown", num_number=5)
    with pytest.raises(ValueError, match="did you mean 'linear'"):
        build_task("lineer")
    with pytest.raises(ValueError, match="needs option"):
        build_task("file")
    with pytest.raises(ValueError, match="ops"):
        Arithmetic(ops="/")
