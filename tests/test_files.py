"""File datasets: jsonl / json / csv / parquet, field mapping, gsm8k and math formats, located errors.

Run: python -m pytest -q tests/test_files.py
"""

import csv
import itertools
import json
from pathlib import Path

import pytest

from ponder.data import DatasetError, FileTask, build_task

ROWS = [
    {"problem": "What is 2+2?", "solution": "2+2=4\n#### 4", "extra": 1},
    {"problem": "What is 1000+234?", "solution": "sum\n#### 1,234", "extra": 2},
    {"problem": "Half of 3?", "solution": "3/2\n#### 1.5", "extra": 3},
]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_csv(path: Path, rows) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_parquet(path: Path, rows) -> Path:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_json(path: Path, rows) -> Path:
    path.write_text(json.dumps(rows))
    return path


@pytest.mark.parametrize(
    "suffix, writer",
    [(".jsonl", write_jsonl), (".csv", write_csv), (".parquet", write_parquet), (".json", write_json)],
)
def test_gsm8k_format_with_field_mapping(tmp_path, suffix, writer):
    path = writer(tmp_path / f"data{suffix}", ROWS)
    task = FileTask(str(path), format="gsm8k", question_field="problem", answer_field="solution")
    assert len(task) == 3 and task.checker == "numeric"
    assert [i.prompt for i in task.rows()] == [r["problem"] for r in ROWS]
    assert [i.ref.answer for i in task.rows()] == ["4", "1234", "1.5"]
    assert [i.id for i in task.rows()] == ["data-0", "data-1", "data-2"]


def test_math_format_takes_last_boxed(tmp_path):
    rows = [
        {"question": "q1", "answer": r"first \boxed{2} then \boxed{\frac{1}{2}}"},
        {"question": "q2", "answer": r"so $\boxed{x^{2}+1}$."},
    ]
    task = FileTask(str(write_jsonl(tmp_path / "m.jsonl", rows)), format="math")
    assert [i.ref.answer for i in task.rows()] == [r"\frac{1}{2}", "x^{2}+1"]


def test_plain_format_picks_checker_and_override(tmp_path):
    numeric = FileTask(str(write_jsonl(tmp_path / "n.jsonl", [{"question": "q", "answer": 27.0}])))
    assert numeric.checker == "numeric" and numeric.rows()[0].ref.answer == "27"
    text_rows = [{"question": "q", "answer": "Paris"}, {"question": "r", "answer": "3"}]
    text = FileTask(str(write_jsonl(tmp_path / "t.jsonl", text_rows)))
    assert text.checker == "exact" and {i.ref.checker for i in text.rows()} == {"exact"}
    forced = FileTask(str(tmp_path / "t.jsonl"), checker="numeric")
    assert forced.rows()[0].ref.checker == "numeric"
    with pytest.raises(ValueError, match="unknown checker"):
        FileTask(str(tmp_path / "t.jsonl"), checker="nope")


def test_items_shuffle_per_epoch_and_shard(tmp_path):
    rows = [{"question": f"q{i}", "answer": str(i)} for i in range(10)]
    task = FileTask(str(write_jsonl(tmp_path / "d.jsonl", rows)))
    stream = list(itertools.islice(task.items(seed=3), 40))
    epochs = [stream[i : i + 10] for i in range(0, 40, 10)]
    for epoch in epochs:
        assert sorted(i.prompt for i in epoch) == sorted(r["question"] for r in rows)
    assert epochs[0] != epochs[1]  # reshuffled with Random(seed + epoch)
    assert stream == list(itertools.islice(task.items(seed=3), 40))
    assert [i.prompt for i in epochs[0]] != [i.prompt for i in itertools.islice(task.items(seed=4), 10)]
    shards = [list(itertools.islice(task.items(3, rank=r, world=2), 20)) for r in range(2)]
    assert [item for pair in zip(*shards, strict=True) for item in pair] == stream
    ordered = FileTask(str(tmp_path / "d.jsonl"), shuffle=False, limit=4)
    assert [i.prompt for i in itertools.islice(ordered.items(0), 6)] == ["q0", "q1", "q2", "q3", "q0", "q1"]


def test_build_task_file(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    task = build_task(
        "file", path=str(path), format="gsm8k", question_field="problem", answer_field="solution"
    )
    assert len(task) == 3 and "3 rows" in task.describe()


def test_bad_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "answer": "1"}\n\n{"question": oops}\n')
    with pytest.raises(DatasetError, match=r"bad\.jsonl: line 3: invalid JSON"):
        FileTask(str(path))


def test_missing_field_lists_available(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    with pytest.raises(DatasetError, match=r"d\.jsonl: line 1: missing field 'question'.*'problem'"):
        FileTask(str(path))
    csv_path = write_csv(tmp_path / "d.csv", [{"question": "q", "answer": "1"}])
    with pytest.raises(DatasetError, match=r"d\.csv: line 2: missing field 'solution'"):
        FileTask(str(csv_path), answer_field="solution")


def test_unparsable_answers_name_the_line(tmp_path):
    rows = [{"question": "q", "answer": "#### 1"}, {"question": "q2", "answer": "no marker 7"}]
    with pytest.raises(DatasetError, match=r"g\.jsonl: line 2: .*####"):
        FileTask(str(write_jsonl(tmp_path / "g.jsonl", rows)), format="gsm8k")
    with pytest.raises(DatasetError, match=r"m\.jsonl: line 1: .*boxed"):
        FileTask(str(write_jsonl(tmp_path / "m.jsonl", [{"question": "q", "answer": "7"}])), format="math")


def test_file_level_errors(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        FileTask(str(tmp_path / "missing.jsonl"))
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DatasetError, match="unsupported file type"):
        FileTask(str(tmp_path / "d.txt"))
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match="no rows"):
        FileTask(str(tmp_path / "empty.jsonl"))
    with pytest.raises(ValueError, match="format"):
        FileTask(str(tmp_path / "empty.jsonl"), format="gsm")


GSM8K = Path("/work/shared/data/gsm8k_train.jsonl")


@pytest.mark.skipif(not GSM8K.is_file(), reason="shared GSM8K copy not present on this machine")
def test_real_gsm8k_file():
    task = FileTask(str(GSM8K), format="gsm8k", limit=50)
    assert len(task) == 50 and task.rows()[0].ref.answer == "72"


def test_math_golds_are_checked_at_load_time(tmp_path):
    import json

    from ponder.data.files import DatasetError, FileTask

    path = tmp_path / "m.jsonl"
    rows = [
        {"question": "q1", "answer": "so \\boxed{\\frac{1}{2}}"},
        {"question": "q2", "answer": "\\boxed{np.arcsin(10/13)}"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetError, match=r"m.jsonl: row 2: .*bad_golds='skip'"):
        FileTask(str(path), format="math")
    task = FileTask(str(path), format="math", bad_golds="skip")
    assert len(task) == 1 and task.skipped == 1 and task.checker == "math"
    assert "1 skipped" in task.describe()
