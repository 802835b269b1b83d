"""Run logs: `metrics.jsonl` (one row per step), `samples.jsonl` (example completions), a progress bar."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class JsonlWriter:
    """Append-only JSON-lines file, flushed after every row so a crash loses nothing already logged."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a")

    def write(self, row: dict[str, Any]) -> None:
        self._fh.write(json.dumps(row, default=_jsonable) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def truncate_jsonl(path: Path, max_step: int) -> None:
    """Drop rows logged after `max_step` (a resumed run rewrites the steps after its checkpoint)."""
    path = Path(path)
    if not path.exists():
        return
    keep = [
        line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= max_step
    ]
    path.write_text("".join(line + "\n" for line in keep))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All rows of a JSON-lines file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


class StepProgress:
    """A rich progress bar showing step, reward, accuracy, response length and ETA."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]step {task.completed}/{task.total}"),
            BarColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            disable=not enabled,
        )
        self.task = self.progress.add_task("grpo", total=total, completed=start, stats="")
        self.started = time.time()

    def __enter__(self) -> StepProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def update(self, row: dict[str, Any]) -> None:
        stats = (
            f"reward {row['reward']:.3f}  acc {row['accuracy']:.3f}  "
            f"len {row['response_len_mean']:.0f}  {row['time_step']:.1f}s/step"
        )
        self.progress.update(self.task, advance=1, stats=stats)


def mean_and_se(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error (sample std / sqrt(n))."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(values) / n
    if n == 1:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)
