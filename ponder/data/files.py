"""Datasets from files: JSONL / JSON (a list) / Parquet / CSV, with field mapping and answer formats.

`FileTask(path, format=...)` turns each row into an `Item`; `format` says where the answer is:
- "plain": the answer field as is; checker "numeric" when every answer is a number, else "exact"
  (or `checker=` to override);
- "gsm8k": the text after the last `####` (GSM8K's convention), commas removed; checker "numeric";
- "math": the last `\\boxed{}` of the answer field (MATH / Minerva solutions); checker "math" (symbolic
  equivalence with math-verify). Every gold answer must parse: a bad one is an error at load time that names
  the file and row, not a reward nobody can earn.

Every data error raises `DatasetError` naming the file and the line (or row) so a bad dataset is fixed in
one look. Rows are loaded eagerly: reasoning datasets are small, and errors should surface at start-up.
"""

from __future__ import annotations

import csv
import itertools
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ponder.data.tasks import Item, check_shard, register_task
from ponder.rewards.base import Reference
from ponder.rewards.checkers import CHECKERS, parse_number
from ponder.rewards.extract import boxed, gsm8k_final

FORMATS = ("plain", "gsm8k", "math")
SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
FORMAT_CHECKER = {"gsm8k": "numeric", "math": "math"}


class DatasetError(ValueError):
    """A dataset file cannot be read or a row lacks what the task needs; the message names file and line."""


def _read_jsonl(path: Path) -> list[tuple[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append((f"line {number}", json.loads(line)))
            except json.JSONDecodeError as err:
                raise DatasetError(f"{path}: line {number}: invalid JSON: {err}") from None
    return rows


def _read_json(path: Path) -> list[tuple[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: line {err.lineno}: invalid JSON: {err.msg}") from None
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return [(f"record {i}", row) for i, row in enumerate(data, start=1)]


def _read_parquet(path: Path) -> list[tuple[str, Any]]:
    try:
        import pyarrow.parquet as pq  # optional heavy dependency, only for parquet files
    except ImportError:
        raise DatasetError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
    return [(f"row {i}", row) for i, row in enumerate(pq.read_table(path).to_pylist(), start=1)]


def _read_csv(path: Path) -> list[tuple[str, Any]]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        # line_num after reading a row is the file line where it ended (the header is line 1)
        return [(f"line {reader.line_num}", row) for row in reader]


_READERS = {".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_parquet, ".csv": _read_csv}


def read_records(path: str | Path) -> list[tuple[str, Any]]:
    """(location, record) pairs in file order; location is "line N" (jsonl, csv) or "record/row N"."""
    path = Path(path)
    if path.suffix not in _READERS:
        raise DatasetError(f"{path}: unsupported file type {path.suffix!r}; supported: {list(SUFFIXES)}")
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    return _READERS[path.suffix](path)


def _answer_text(value: Any) -> str:
    """A field value as answer text; integral floats lose their ".0" (AMC's 27.0 -> "27")."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _parse_answer(raw: str, fmt: str, where: str) -> str:
    if fmt == "gsm8k":
        answer = gsm8k_final(raw)
        if answer is None:
            raise DatasetError(f"{where}: gsm8k answer has no '#### <answer>' line: {raw[-80:]!r}")
        return answer
    if fmt == "math":
        answer = boxed(raw)
        if answer is None:
            raise DatasetError(f"{where}: math answer has no \\boxed{{...}}: {raw[-80:]!r}")
        return answer
    if not raw:
        raise DatasetError(f"{where}: empty answer")
    return raw


@register_task("file")
class FileTask:
    """Prompts from a dataset file; `items()` cycles epochs forever, `rows()` gives file order for eval."""

    name = "file"

    def __init__(
        self,
        path: str,
        format: str = "plain",
        question_field: str = "question",
        answer_field: str = "answer",
        shuffle: bool = True,
        limit: int | None = None,
        checker: str | None = None,
        bad_golds: str = "error",
    ):
        if bad_golds not in ("error", "skip"):
            raise ValueError(f"bad_golds must be 'error' or 'skip', got {bad_golds!r}")
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
        if checker is not None and checker not in CHECKERS:
            raise ValueError(f"unknown checker {checker!r}; available: {sorted(CHECKERS)}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        self.path, self.format, self.shuffle, self.limit = str(path), format, shuffle, limit
        self.question_field, self.answer_field = question_field, answer_field
        pairs = self._load()
        if not pairs:
            raise DatasetError(f"{self.path}: no rows")
        self.checker = checker or FORMAT_CHECKER.get(format) or self._plain_checker([a for _, a in pairs])
        self.skipped = 0
        if self.checker == "math":
            pairs = self._check_golds(pairs, bad_golds)
        stem = Path(self.path).stem
        self._items = [
            Item(question, Reference(answer, self.checker), f"{stem}-{i}")
            for i, (question, answer) in enumerate(pairs)
        ]

    def _check_golds(self, pairs: list[tuple[str, str]], bad_golds: str) -> list[tuple[str, str]]:
        """Keep rows whose gold math-verify parses; a bad one is an error, or skipped and counted."""
        from ponder.rewards.math import check_gold  # starts the verifier's worker processes

        kept = []
        for row, (question, answer) in enumerate(pairs, start=1):
            try:
                check_gold(answer)
            except ValueError as err:
                if bad_golds == "error":
                    raise DatasetError(
                        f"{self.path}: row {row}: {err} (pass bad_golds='skip' to drop such rows)"
                    ) from None
                self.skipped += 1
                continue
            kept.append((question, answer))
        if not kept:
            raise DatasetError(f"{self.path}: no row has a gold answer math-verify can parse")
        return kept

    @staticmethod
    def _plain_checker(answers: list[str]) -> str:
        return "numeric" if all(parse_number(a) is not None for a in answers) else "exact"

    def _field(self, record: Any, field: str, where: str) -> str:
        if not isinstance(record, dict):
            raise DatasetError(f"{where}: expected an object with fields, got {type(record).__name__}")
        if field not in record or record[field] is None:
            raise DatasetError(f"{where}: missing field {field!r}; available fields: {sorted(record)}")
        return _answer_text(record[field])

    def _load(self) -> list[tuple[str, str]]:
        records = read_records(self.path)
        if self.limit is not None:
            records = records[: self.limit]
        pairs = []
        for location, record in records:
            where = f"{self.path}: {location}"
            question = self._field(record, self.question_field, where)
            raw = self._field(record, self.answer_field, where)
            pairs.append((question, _parse_answer(raw, self.format, where)))
        return pairs

    def __len__(self) -> int:
        return len(self._items)

    def rows(self) -> list[Item]:
        """All items in file order (for evaluation)."""
        return list(self._items)

    def items(self, seed: int, rank: int = 0, world: int = 1) -> Iterator[Item]:
        """Infinite: epoch e is the file reshuffled with Random(seed + e) (file order if not shuffle);
        rank r takes items r, r + world, ... of that single stream."""
        return _epochs(self._items, seed, self.shuffle, rank, world)

    def describe(self) -> str:
        skipped = f", {self.skipped} skipped: unparsable gold" if self.skipped else ""
        return f"file: {self.path} ({len(self)} rows, format {self.format}, checker {self.checker}{skipped})"


def _epochs(items: list[Item], seed: int, shuffle: bool, rank: int, world: int) -> Iterator[Item]:
    """`items` forever, epoch e reshuffled with Random(seed + e) (in order if not `shuffle`); rank r of
    `world` takes items r, r + world, ... of that single stream."""
    check_shard(rank, world)

    def stream() -> Iterator[Item]:
        for epoch in itertools.count():
            order = list(range(len(items)))
            if shuffle:
                random.Random(seed + epoch).shuffle(order)
            yield from (items[i] for i in order)

    return itertools.islice(stream(), rank, None, world)


PROMPT_FORMATS = ("auto", "self_instruct", "plain")


@register_task("prompts")
class PromptTask:
    """General prompts without gold answers, for the all-scenarios RL stage (scored by reward models).

    format "self_instruct": records with `instruction` and `instances` [{input, output}] (the self-instruct
    seed tasks), one prompt per instance: the instruction, a blank line and the input when there is one;
    records with `instruction` and an optional `input` (alpaca) give one prompt each. The outputs are not
    used: there is no gold answer to check. "plain": the `prompt_field` of each record. "auto": per record,
    self-instruct when it has `instruction`, else plain. Items carry `ref.meta = {"kind": "general",
    "prompt": <the prompt>}` and an empty answer; `items()` cycles reshuffled epochs like `FileTask`.
    """

    name = "prompts"
    checker = "exact"

    def __init__(
        self,
        path: str,
        format: str = "auto",
        prompt_field: str = "prompt",
        shuffle: bool = True,
        limit: int | None = None,
    ):
        if format not in PROMPT_FORMATS:
            raise ValueError(f"format must be one of {PROMPT_FORMATS}, got {format!r}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        self.path, self.format, self.prompt_field = str(path), format, prompt_field
        self.shuffle, self.limit = shuffle, limit
        records = read_records(self.path)[:limit]
        stem = Path(self.path).stem
        self._items = [
            Item(prompt, Reference("", self.checker, {"kind": "general", "prompt": prompt}), f"{stem}-{key}")
            for location, record in records
            for key, prompt in self._prompts(record, f"{self.path}: {location}", location)
        ]
        if not self._items:
            raise DatasetError(f"{self.path}: no prompts")

    def _prompts(self, record: Any, where: str, location: str) -> list[tuple[str, str]]:
        """(id, prompt) pairs of one record; blank prompts are dropped."""
        if not isinstance(record, dict):
            raise DatasetError(f"{where}: expected an object with fields, got {type(record).__name__}")
        rid = str(record.get("id", location.replace(" ", "")))
        if self.format == "self_instruct" or (self.format == "auto" and "instruction" in record):
            if "instruction" not in record:
                raise DatasetError(f"{where}: missing field 'instruction'; available: {sorted(record)}")
            instances = record.get("instances") or [{"input": record.get("input", "")}]
            instruction = record["instruction"]
            pairs = [(f"{rid}-{j}", _join(instruction, x.get("input", ""))) for j, x in enumerate(instances)]
        else:
            if record.get(self.prompt_field) is None:
                raise DatasetError(
                    f"{where}: missing field {self.prompt_field!r}; available fields: {sorted(record)} "
                    "(set prompt_field)"
                )
            pairs = [(rid, str(record[self.prompt_field]).strip())]
        return [(key, prompt) for key, prompt in pairs if prompt]

    def __len__(self) -> int:
        return len(self._items)

    def rows(self) -> list[Item]:
        """All items in file order."""
        return list(self._items)

    def items(self, seed: int, rank: int = 0, world: int = 1) -> Iterator[Item]:
        """Infinite, reshuffled each epoch, rank-sharded (as `FileTask.items`)."""
        return _epochs(self._items, seed, self.shuffle, rank, world)

    def describe(self) -> str:
        return f"prompts: {self.path} ({len(self)} general prompts, format {self.format})"


def _join(instruction: Any, extra: Any) -> str:
    """The instruction, then a blank line and the extra input when there is one."""
    instruction, extra = str(instruction).strip(), str(extra or "").strip()
    return f"{instruction}\n\n{extra}" if extra else instruction
