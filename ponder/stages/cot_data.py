"""Cold-start data written by program: worked, self-checked chains of thought for the arithmetic task, or
human-written worked solutions (GSM8K's `answer` field) put into the R1 format.

R1's cold start is a few hundred to thousands of long, readable chains of thought. For ponder's built-in
arithmetic task they can be written exactly, without a teacher: each operation is worked digit by digit
(addition with carries, subtraction with borrows, multiplication split by place value), then checked by
the inverse operation ("Wait, let me check: ..."), then answered. Every row's answer is the task's own
reference answer, so the data is verified by construction.

    [stages.cold_start_data]
    kind = "cot_data"
    task = { digits = 2, ops = "+" }   # ponder.data.tasks.Arithmetic arguments
    count = 300

With `gsm8k = "PATH/gsm8k_train.jsonl"` the rows come from that file instead: the worked solution (its
calculator annotations `<<48/2=24>>` removed) becomes the reasoning, the number after `####` the answer.

Writes `data.jsonl` (prompt, response, answer, id, source) and `summary.json`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from ponder.config import ConfigError
from ponder.data.tasks import Arithmetic


@dataclass(frozen=True)
class CotDataConfig:
    """`count` problems of the arithmetic task (`task`: its arguments), drawn with `seed`; `verify` adds the
    inverse-operation check; `template` shapes the response from {reasoning} and {answer}."""

    task: dict[str, Any] = field(default_factory=lambda: {"digits": 2, "ops": "+"})
    count: int = 300
    seed: int = 1234
    verify: bool = True
    template: str = "<think>{reasoning}</think>\n<answer>{answer}</answer>"
    gsm8k: str = ""  # a GSM8K-format JSONL (question, answer "...#### N"): use its worked solutions instead

    def __post_init__(self) -> None:
        if self.count <= 0:
            raise ConfigError(f"cot_data.count = {self.count!r} is not allowed; it must be positive")
        for name in ("{reasoning}", "{answer}"):
            if name not in self.template:
                raise ConfigError(f"cot_data.template must contain {name}, got {self.template!r}")
        try:
            Arithmetic(**self.task)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"cot_data.task = {self.task!r}: {err}") from None


def add_steps(a: int, b: int) -> list[str]:
    """Column addition of two non-negative integers, one line per digit, with carries."""
    xs, ys = str(a)[::-1], str(b)[::-1]
    lines, carry, digits = [], 0, []
    for i in range(max(len(xs), len(ys))):
        x, y = int(xs[i]) if i < len(xs) else 0, int(ys[i]) if i < len(ys) else 0
        total = x + y + carry
        extra = f" + {carry} (carry)" if carry else ""
        place = ["ones", "tens", "hundreds", "thousands"][i] if i < 4 else f"10^{i}"
        lines.append(
            f"{place}: {x} + {y}{extra} = {total}, write {total % 10}" + (", carry 1" if total >= 10 else "")
        )
        digits.append(total % 10)
        carry = total // 10
    if carry:
        lines.append(f"the last carry gives a leading {carry}")
    return lines


def _op_steps(a: int, op: str, b: int) -> tuple[list[str], int]:
    if op == "+":
        columns = add_steps(a, b) if a >= 0 and b >= 0 else []
        return [*columns, f"So {a} + {b} = {a + b}."], a + b
    if op == "-":
        return [f"{a} - {b}: {b} + {a - b} = {a}, so {a} - {b} = {a - b}."], a - b
    return mul_steps(a, b), a * b


def _places(n: int) -> list[int]:
    """The non-zero place values of n >= 0, largest first: 407 -> [400, 7]."""
    return [int(c) * 10**i for i, c in enumerate(str(n)[::-1]) if c != "0"][::-1]


def _by_places(a: int, b: int) -> str:
    """`a * b` through a's place values: '47 * 6 = 40 * 6 + 7 * 6 = 240 + 42 = 282' (a, b >= 0)."""
    parts = _places(a)
    if len(parts) < 2:
        return f"{a} * {b} = {a * b}"
    terms, values = " + ".join(f"{x} * {b}" for x in parts), " + ".join(str(x * b) for x in parts)
    return f"{a} * {b} = {terms} = {values} = {a * b}"


def mul_steps(a: int, b: int) -> list[str]:
    """Long multiplication in lines: b split by place value, a times each of b's digits through a's place
    values, the partial products added in columns (`add_steps`). One line when an operand is negative,
    b is 0 or both are one digit."""
    if a < 0 or b <= 0 or (a < 10 and b < 10):
        return [f"{a} * {b} = {a * b}."]
    parts = [(int(c), i) for i, c in enumerate(str(b)[::-1]) if c != "0"][::-1]  # (digit, place)
    if len(parts) == 1:  # one non-zero digit: 47 * 6, 47 * 30
        ((d, p),) = parts
        return [_by_places(a, d) + (f", so {a} * {b} = {a * b}." if p else ".")]
    lines = [f"{a} * {b} = " + " + ".join(f"{a} * {d * 10**p}" for d, p in parts) + "."]
    for d, p in parts:
        scaled = f", so {a} * {d * 10**p} = {a * d * 10**p}." if p else "."
        lines.append(_by_places(a, d) + scaled)
    total = 0
    for d, p in parts:
        partial = a * d * 10**p
        if total:
            lines += [f"{total} + {partial}:", *add_steps(total, partial)]
        total += partial
    return [*lines, f"So {a} * {b} = {total}."]


def _check(a: int, op: str, b: int, result: int) -> str:
    if op == "+":
        return f"Wait, let me check: {result} - {b} = {result - b}, which is {a}. Correct."
    if op == "-":
        return f"Wait, let me check: {result} + {b} = {result + b}, which is {a}. Correct."
    if a >= 0 and b >= 0 and max(a, b) >= 10:  # recompute the other way round
        return f"Wait, let me check the other way: {_by_places(b, a)}. Correct."
    if b and result % b == 0:
        return f"Wait, let me check: {result} / {b} = {result // b}, which is {a}. Correct."
    return f"Wait, let me check: {b} * {a} = {b * a}. Correct."


def worked_solution(expression: str, verify: bool = True) -> tuple[str, int]:
    """(reasoning, value) for an expression like '47 + 38 * 2' evaluated with the usual precedence."""
    tokens = expression.split()
    numbers, ops = [int(t) for t in tokens[::2]], tokens[1::2]
    lines: list[str] = []
    # multiplications first (precedence), then left to right
    while "*" in ops:
        i = ops.index("*")
        steps, value = _op_steps(numbers[i], "*", numbers[i + 1])
        lines += steps + ([_check(numbers[i], "*", numbers[i + 1], value)] if verify else [])
        numbers[i : i + 2] = [value]
        del ops[i]
    value = numbers[0]
    for op, n in zip(ops, numbers[1:], strict=True):
        steps, new = _op_steps(value, op, n)
        lines += steps + ([_check(value, op, n, new)] if verify else [])
        value = new
    if len(tokens) > 3:
        lines.append(f"So {expression} = {value}.")
    return "\n".join(lines), value


def run_cot_data(cfg: CotDataConfig, run_dir: Path) -> dict[str, Any]:
    """Write `count` worked problems to run_dir/data.jsonl; returns (and writes) the summary."""
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = _gsm8k_rows(cfg) if cfg.gsm8k else _arithmetic_rows(cfg)
    with (run_dir / "data.jsonl").open("w") as f:
        for row in rows:
            f.write(json.dumps({**row, "source": "gsm8k" if cfg.gsm8k else "cot_data"}) + "\n")
    summary = {
        "rows": len(rows),
        "mean_response_chars": sum(len(r["response"]) for r in rows) / max(1, len(rows)),
        "source": cfg.gsm8k or Arithmetic(**cfg.task).describe(),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _gsm8k_rows(cfg: CotDataConfig) -> list[dict[str, Any]]:
    from ponder.data.files import DatasetError

    rows = []
    with open(cfg.gsm8k) as f:
        for line_no, line in enumerate(f, start=1):
            if len(rows) == cfg.count:
                break
            try:
                record = json.loads(line)
                question, solution = record["question"], record["answer"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise DatasetError(f"{cfg.gsm8k}:{line_no}: not a GSM8K row ({err})") from None
            if "####" not in solution:
                raise DatasetError(f"{cfg.gsm8k}:{line_no}: the answer has no '#### N' final line")
            reasoning, answer = solution.rsplit("####", 1)
            reasoning = re.sub(r"<<[^>]*>>", "", reasoning).strip()
            answer = answer.strip().replace(",", "")
            response = cfg.template.format(reasoning=reasoning, answer=answer)
            rows.append(
                {"id": f"gsm8k-{line_no}", "prompt": question, "response": response, "answer": answer}
            )
    return rows


def _arithmetic_rows(cfg: CotDataConfig) -> list[dict[str, Any]]:
    task = Arithmetic(**cfg.task)
    rows = []
    for item in islice(task.items(cfg.seed), cfg.count):
        match = re.fullmatch(r"What is (.+)\?", item.prompt)
        if match is None:
            raise RuntimeError(f"unexpected arithmetic prompt {item.prompt!r}")
        reasoning, value = worked_solution(match.group(1), cfg.verify)
        if str(value) != item.ref.answer:  # the program and the task must agree
            raise RuntimeError(f"{item.id}: worked value {value} != reference {item.ref.answer}")
        response = cfg.template.format(reasoning=reasoning, answer=item.ref.answer)
        rows.append({"id": item.id, "prompt": item.prompt, "response": response, "answer": item.ref.answer})
    return rows
