"""Built-in seeded, infinite prompt generators (arithmetic, countdown, linear) and the `TASKS` registry.

A task is an object with `name`, `checker`, `describe()` and `items(seed, rank=0, world=1) -> Iterator[Item]`.
Item i of a stream depends only on (seed, i): it is drawn from its own `random.Random(f"{seed}:{i}")`
(string seeds hash deterministically, unlike `hash()`), so a stream is reproducible and rank r of `world`
takes items r, r + world, ... without generating the others. The union over ranks is the world=1 stream.

Countdown follows TinyZero (the numbers, a target, each number once); the prompt wording is ours.
`Mixture` interleaves tasks at fixed weights (`task.mix`, built by `task_from_config`), tagging each item
with its kind ("reasoning" or "general") for reward routing.
"""

from __future__ import annotations

import bisect
import dataclasses
import inspect
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ponder.config import ConfigError, TaskConfig
from ponder.registry import Registry
from ponder.rewards.base import Reference


@dataclass(frozen=True)
class Item:
    """One prompt: the question text (before templating), its ground truth, and a stable id."""

    prompt: str
    ref: Reference
    id: str


TASKS = Registry("task")
register_task = TASKS.register


def check_shard(rank: int, world: int) -> None:
    """Raise ValueError unless 0 <= rank < world."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"need 0 <= rank < world, got rank={rank}, world={world}")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


class GeneratedTask:
    """Base for generators: subclasses set `name`, `checker` and implement `make(rng, index) -> Item`."""

    name = ""
    checker = "numeric"

    def make(self, rng: random.Random, index: int, seed: int) -> Item:
        raise NotImplementedError

    def items(self, seed: int, rank: int = 0, world: int = 1) -> Iterator[Item]:
        """Infinite stream; rank r yields items r, r + world, r + 2*world, ... of the seed's stream."""
        check_shard(rank, world)
        for index in itertools.count(rank, world):
            yield self.make(random.Random(f"{seed}:{index}"), index, seed)

    def describe(self) -> str:
        raise NotImplementedError


def _operand(rng: random.Random, min_digits: int, max_digits: int) -> int:
    digits = rng.randint(min_digits, max_digits)
    return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


def _value_of(operands: list[int], ops: list[str]) -> int:
    """Value of o0 op0 o1 op1 ... with the usual precedence (* before + -), without eval."""
    terms, signs, product = [], [], operands[0]
    for op, operand in zip(ops, operands[1:], strict=True):
        if op == "*":
            product *= operand
        else:
            terms.append(product)
            signs.append(op)
            product = operand
    terms.append(product)
    total = terms[0]
    for sign, term in zip(signs, terms[1:], strict=True):
        total = total + term if sign == "+" else total - term
    return total


@register_task("arithmetic")
class Arithmetic(GeneratedTask):
    """Prompts like "What is 37 + 45?".

    `num_operands` integers of `min_digits`..`digits` digits joined by ops drawn from `ops`; the answer uses
    the usual precedence (* before + and -).
    """

    name = "arithmetic"
    checker = "numeric"

    def __init__(self, digits: int = 2, ops: str = "+", num_operands: int = 2, min_digits: int = 1):
        _require(1 <= min_digits <= digits, f"need 1 <= min_digits <= digits, got {min_digits}, {digits}")
        _require(
            bool(ops) and set(ops) <= set("+-*"), f"ops must be a non-empty subset of '+-*', got {ops!r}"
        )
        _require(num_operands >= 2, f"num_operands must be >= 2, got {num_operands}")
        self.digits, self.ops, self.num_operands, self.min_digits = digits, ops, num_operands, min_digits

    def make(self, rng: random.Random, index: int, seed: int) -> Item:
        operands = [_operand(rng, self.min_digits, self.digits) for _ in range(self.num_operands)]
        ops = [rng.choice(self.ops) for _ in range(self.num_operands - 1)]
        expression = str(operands[0]) + "".join(f" {op} {n}" for op, n in zip(ops, operands[1:], strict=True))
        answer = str(_value_of(operands, ops))
        return Item(f"What is {expression}?", Reference(answer, self.checker), f"{self.name}-{seed}-{index}")

    def describe(self) -> str:
        return (
            f"arithmetic: {self.num_operands} operands of {self.min_digits}-{self.digits} digits, "
            f"ops {self.ops!r}"
        )


_COMBINE = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b if b != 0 else None,
}


@register_task("countdown")
class Countdown(GeneratedTask):
    """Reach a target with `num_numbers` numbers in 1..`max_number`, each used once, ops from `ops`.

    The target is reachable by construction: a random expression tree over the numbers is built (merge two
    random subtrees with a random op until one is left) and its value kept only if it is a positive integer
    (up to `max_target`); after 100 failed draws the sum is used, which always is one.
    The construction is kept in `ref.meta["solution"]` for debugging and tests; prompts never show it.
    """

    name = "countdown"
    checker = "countdown"

    def __init__(self, num_numbers: int = 3, max_number: int = 20, ops: str = "+-*/", max_target: int = 1000):
        _require(num_numbers >= 2, f"num_numbers must be >= 2, got {num_numbers}")
        _require(max_number >= 1, f"max_number must be >= 1, got {max_number}")
        _require(
            bool(ops) and set(ops) <= set("+-*/"), f"ops must be a non-empty subset of '+-*/', got {ops!r}"
        )
        _require(max_target >= 1, f"max_target must be >= 1, got {max_target}")
        self.num_numbers, self.max_number, self.ops, self.max_target = (
            num_numbers,
            max_number,
            ops,
            max_target,
        )

    def _build(self, rng: random.Random, numbers: list[int]) -> tuple[Fraction | None, str]:
        nodes: list[tuple[Fraction | None, str]] = [(Fraction(n), str(n)) for n in numbers]
        while len(nodes) > 1:
            (a, ea), (b, eb) = nodes.pop(rng.randrange(len(nodes))), nodes.pop(rng.randrange(len(nodes)))
            op = rng.choice(self.ops)
            value = None if a is None or b is None else _COMBINE[op](a, b)
            nodes.append((value, f"({ea} {op} {eb})"))
        value, expression = nodes[0]
        return value, expression[1:-1]  # drop the outermost parentheses

    def make(self, rng: random.Random, index: int, seed: int) -> Item:
        numbers = [rng.randint(1, self.max_number) for _ in range(self.num_numbers)]
        for _ in range(100):
            value, solution = self._build(rng, numbers)
            if value is not None and value.denominator == 1 and 0 < value <= self.max_target:
                break
        else:
            value, solution = Fraction(sum(numbers)), " + ".join(map(str, numbers))
        target = int(value)
        ops = ", ".join(self.ops)
        prompt = (
            f"Using the numbers {numbers}, create an equation that equals {target}. "
            f"You can use basic arithmetic operations ({ops}) and each number exactly once."
        )
        meta = {"numbers": numbers, "target": target, "solution": solution}
        return Item(prompt, Reference(str(target), self.checker, meta), f"{self.name}-{seed}-{index}")

    def describe(self) -> str:
        return f"countdown: {self.num_numbers} numbers in 1..{self.max_number}, ops {self.ops!r}"


def _linear_lhs(a: int, b: int) -> str:
    """ "3x + 7", "-x - 2", "x" for a*x + b."""
    ax = "x" if a == 1 else "-x" if a == -1 else f"{a}x"
    return ax if b == 0 else f"{ax} {'+' if b > 0 else '-'} {abs(b)}"


@register_task("linear")
class Linear(GeneratedTask):
    """Prompts like "Solve for x: 3x + 7 = 22.".

    a in ±1..`max_coef`, integer x in ±`max_solution`, b in ±10*`max_coef`, c = a*x + b.
    """

    name = "linear"
    checker = "numeric"

    def __init__(self, max_coef: int = 10, max_solution: int = 20):
        _require(max_coef >= 1, f"max_coef must be >= 1, got {max_coef}")
        _require(max_solution >= 0, f"max_solution must be >= 0, got {max_solution}")
        self.max_coef, self.max_solution = max_coef, max_solution

    def make(self, rng: random.Random, index: int, seed: int) -> Item:
        a = rng.choice([-1, 1]) * rng.randint(1, self.max_coef)
        x = rng.randint(-self.max_solution, self.max_solution)
        b = rng.randint(-10 * self.max_coef, 10 * self.max_coef)
        c = a * x + b
        prompt = f"Solve for x: {_linear_lhs(a, b)} = {c}."
        ref = Reference(str(x), self.checker, {"a": a, "b": b, "c": c})
        return Item(prompt, ref, f"{self.name}-{seed}-{index}")

    def describe(self) -> str:
        return f"linear: a*x + b = c with |a| <= {self.max_coef}, |x| <= {self.max_solution}"


def build_task(name: str, **kwargs: Any) -> Any:
    """Instantiate the task registered as `name` with `kwargs`; unknown names or kwargs raise ValueError
    naming the offender and the allowed choices."""
    cls = TASKS[name]
    allowed = [p for p in inspect.signature(cls).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"task {name!r} got unknown option(s) {unknown}; allowed: {allowed}")
    required = [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.default is inspect.Parameter.empty and p.name not in kwargs
    ]
    if required:
        raise ValueError(f"task {name!r} needs option(s) {required}; allowed: {allowed}")
    return cls(**kwargs)


@dataclass(frozen=True)
class Component:
    """One source of a `Mixture`: a task, its probability and the kind of prompts it gives."""

    task: Any
    weight: float
    kind: str  # "reasoning" (rule rewards) or "general" (reward models)


class Mixture:
    """Items drawn from several tasks at fixed weights; each item's `ref.meta` gets "kind" and "prompt".

    Item i of the single stream picks its component with its own `random.Random(f"{seed}:mix:{i}")`, and
    takes the next item of that component's stream (component j seeded with seed + 7919 * j, so component
    0, the main task, yields what it yields alone, interleaved). The stream therefore depends only on the
    seed; rank r of `world` takes items r, r + world, ... of it (every rank walks the whole stream: items
    are cheap next to a rollout). `meta["prompt"]` is the raw user prompt, which reward models read.
    """

    name = "mixture"

    def __init__(self, components: list[Component]):
        _require(len(components) >= 1, "a mixture needs at least one component")
        _require(all(c.weight > 0 for c in components), "mixture weights must be > 0")
        _require(all(c.kind in ("reasoning", "general") for c in components), "kind: reasoning or general")
        self.components = components
        total = sum(c.weight for c in components)
        self._edges = list(itertools.accumulate(c.weight / total for c in components))

    def pick(self, seed: int, index: int) -> int:
        """Which component item `index` of the seed's stream comes from."""
        u = random.Random(f"{seed}:mix:{index}").random()
        return min(bisect.bisect_right(self._edges, u), len(self.components) - 1)

    def _stream(self, seed: int) -> Iterator[Item]:
        streams = [c.task.items(seed + 7919 * j) for j, c in enumerate(self.components)]
        for index in itertools.count():
            j = self.pick(seed, index)
            yield tag_item(next(streams[j]), self.components[j].kind)

    def items(self, seed: int, rank: int = 0, world: int = 1) -> Iterator[Item]:
        """Infinite; rank r takes items r, r + world, ... of the seed's single stream."""
        check_shard(rank, world)
        return itertools.islice(self._stream(seed), rank, None, world)

    def describe(self) -> str:
        parts = [f"{c.weight:.0%} {c.kind} {c.task.describe()}" for c in self.components]
        return "mixture: " + "; ".join(parts)


def tag_item(item: Item, kind: str) -> Item:
    """`item` with `ref.meta["kind"] = kind` and `ref.meta["prompt"] = item.prompt` (other meta kept)."""
    meta = {**item.ref.meta, "kind": kind, "prompt": item.prompt}
    return dataclasses.replace(item, ref=dataclasses.replace(item.ref, meta=meta))


def task_from_config(cfg: TaskConfig) -> Any:
    """The task `cfg` names; with `cfg.mix`, a `Mixture` of it (weight 1 - the mix weights, kind reasoning)
    and each entry. A bad task option raises ConfigError naming the key (`task.args`, `task.mix[i].args`)."""
    main = _built("task.args", cfg.name, cfg.args)
    if not cfg.mix:
        return main
    rest = 1.0 - sum(entry.weight for entry in cfg.mix)
    components = [Component(main, rest, "reasoning")]
    for i, entry in enumerate(cfg.mix):
        task = _built(f"task.mix[{i}].args", entry.name, entry.args)
        components.append(Component(task, entry.weight, entry.resolved_kind()))
    return Mixture(components)


def _built(key: str, name: str, args: dict[str, Any]) -> Any:
    try:
        return build_task(name, **args)
    except ValueError as err:  # DatasetError included: a file that cannot be read
        raise ConfigError(f"{key} (task {name!r}): {err}") from None
