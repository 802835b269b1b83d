"""Benchmark files as evaluation problems: GSM8K, MATH/Minerva, AIME/AMC and HumanEval shapes, auto-detected.

`load_problems(path, format)` returns `Problems` (items in file order, each an `Item` whose `Reference`
carries the checker). The answer formats reuse `ponder.data.files.FileTask`, so a bad row fails with the
same file-and-line `DatasetError` as in training:

| format | fields | gold answer | checker |
|---|---|---|---|
| gsm8k | question, answer | after the last `####` | numeric |
| math | problem, solution (or answer) | the last `\\boxed{}` (or the answer as is) | math (math-verify) |
| aime | problem, answer | the answer (AIME integers, AMC numbers) | numeric |
| code | prompt, test, entry_point | HumanEval tests run in the sandbox (`rewards/code.py`) | code_pass |

"auto" reads the first record: `test` + `entry_point` (or `canonical_solution`) -> code; an answer with
`####` -> gsm8k; answers that are all numbers -> aime; other answers, or a `solution` with a box -> math.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder.data.files import DatasetError, FileTask, read_records
from ponder.data.tasks import Item
from ponder.rewards.base import Reference
from ponder.rewards.checkers import parse_number

FORMATS = ("gsm8k", "math", "aime", "code")
QUESTION_FIELDS = ("problem", "question", "prompt")
CODE_FIELDS = ("prompt", "test", "entry_point")

# HumanEval gives a signature and docstring; the model answers with the whole function (a bare body also
# works: `rewards/code.py` continues the prompt with it).
CODE_QUESTION = (
    "Complete the following Python function. Give the whole function, with any imports it needs, "
    "in one ```python code block.\n\n```python\n{prompt}```"
)


@dataclass(frozen=True)
class Problems:
    """A benchmark file's problems; `why` says how the format was chosen (printed by `ponder eval`);
    `skipped` counts math rows left out because math-verify cannot parse their gold answer."""

    path: str
    format: str
    items: list[Item]
    why: str
    skipped: int = 0


def load_problems(path: str | Path, format: str = "auto", limit: int | None = None) -> Problems:
    """The first `limit` problems of `path` (all when None) in `format` ("auto": detected)."""
    path = str(path)
    if format != "auto" and format not in FORMATS:
        raise DatasetError(f"{path}: unknown format {format!r}; choose one of {('auto', *FORMATS)}")
    records = read_records(path)
    if not records:
        raise DatasetError(f"{path}: no rows")
    location, first = records[0]
    if not isinstance(first, dict):
        raise DatasetError(f"{path}: {location}: expected an object with fields, got {type(first).__name__}")
    why = "given by --format"
    if format == "auto":
        format, why = detect_format([record for _, record in records], f"{path}: {location}")
    if format == "code":
        return Problems(path, format, _code_items(path, records[:limit]), why)
    # An unparsable gold (Minerva has a few, e.g. "np.arcsin(10/13)") would make its problem unanswerable:
    # such rows are left out and counted, never silently scored 0.
    args = _file_task_args(format, first, f"{path}: {location}")
    task = FileTask(path, shuffle=False, limit=limit, bad_golds="skip", **args)
    return Problems(path, format, task.rows(), why, task.skipped)


def detect_format(records: list[Any], where: str) -> tuple[str, str]:
    """(format, reason) from the first record's fields (and every record's answer: "aime" only when all
    are numbers); a DatasetError naming `where` (the first record) when nothing fits."""
    record = records[0]
    keys = set(record)
    if {"test", "entry_point"} <= keys or "canonical_solution" in keys:
        return "code", "fields test/entry_point/canonical_solution: HumanEval-style code"
    answer = record.get("answer")
    if isinstance(answer, str) and "####" in answer:
        return "gsm8k", "the answer has '#### N': GSM8K"
    if answer is not None and all(_is_number(r) for r in records):
        return "aime", "every answer is a number: AIME/AMC style, numeric checker"
    if answer is not None:
        return "math", "answers that are not all numbers: math (math-verify equivalence)"
    if "\\boxed" in str(record.get("solution", "")):
        return "math", "the solution has a \\boxed{} answer: MATH/Minerva"
    raise DatasetError(
        f"{where}: cannot tell the benchmark format from the fields {sorted(keys)}: expected 'answer' "
        "(gsm8k '#### N', a number, or math), a 'solution' with \\boxed{}, or HumanEval's 'test' and "
        f"'entry_point'; pass --format one of {FORMATS}"
    )


def _is_number(record: Any) -> bool:
    answer = record.get("answer") if isinstance(record, dict) else None
    return answer is not None and parse_number(str(answer)) is not None


def _question_field(record: dict[str, Any], where: str) -> str:
    for name in QUESTION_FIELDS:
        if name in record:
            return name
    raise DatasetError(f"{where}: no question field; expected one of {QUESTION_FIELDS}, got {sorted(record)}")


def _file_task_args(format: str, record: dict[str, Any], where: str) -> dict[str, Any]:
    """FileTask arguments for an answer format, fields picked from the first record."""
    question = _question_field(record, where)
    if format == "gsm8k":
        return {"format": "gsm8k", "question_field": question, "answer_field": "answer"}
    if format == "aime":
        return {"format": "plain", "question_field": question, "answer_field": "answer", "checker": "numeric"}
    # math: a boxed solution (MATH, Minerva) or a bare answer field (MATH-500 style), both by math-verify
    if "answer" in record and "\\boxed" not in str(record["answer"]):
        return {"format": "plain", "question_field": question, "answer_field": "answer", "checker": "math"}
    field = "answer" if "answer" in record else "solution"
    return {"format": "math", "question_field": question, "answer_field": field}


def _code_items(path: str, records: list[tuple[str, Any]]) -> list[Item]:
    items = []
    stem = Path(path).stem
    for i, (location, record) in enumerate(records):
        where = f"{path}: {location}"
        if not isinstance(record, dict):
            raise DatasetError(f"{where}: expected an object with fields, got {type(record).__name__}")
        missing = [name for name in CODE_FIELDS if not isinstance(record.get(name), str)]
        if missing:
            raise DatasetError(f"{where}: missing field(s) {missing}; available fields: {sorted(record)}")
        meta = {name: record[name] for name in CODE_FIELDS}
        ref = Reference(str(record.get("canonical_solution", "")), "exact", meta)
        items.append(
            Item(
                CODE_QUESTION.format(prompt=record["prompt"]), ref, str(record.get("task_id", f"{stem}-{i}"))
            )
        )
    return items
