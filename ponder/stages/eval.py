"""An evaluation stage: accuracy of a model on a task's items, k samples each, the way R1 reports it.

pass@1 is the mean over the k samples of each item, averaged over items, with a 95% interval from the
spread across items (normal approximation); strict R1 accuracy and the format rate likewise. In a pipeline
it measures a stage's model, e.g. GSM8K test accuracy after every stage:

    [stages.eval_cold_start]
    kind = "eval"
    model = { name = "@cold_start" }
    task = { name = "file", args = { path = "../shared/data/gsm8k_test.jsonl", format = "gsm8k" } }
    samples = 4

A model behind an OpenAI-compatible server (a teacher to distill from) is evaluated with
`teacher = { url = "http://HOST:PORT/v1", model = "NAME" }` in place of `model` (`ponder.rollout.openai_api`;
it is sent the conversation, so `prompt.prefill` does not apply).

Writes `results.jsonl` (one row per sample) and `summary.json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from ponder.config import (
    ConfigError,
    ModelConfig,
    PromptConfig,
    RolloutConfig,
    SamplingConfig,
    TaskConfig,
    check_positive,
)
from ponder.data.tasks import build_task
from ponder.data.templates import prompt_ids
from ponder.evaluate import evaluate_items
from ponder.evaluate.metrics import mean_ci95
from ponder.model import AUTOCAST_DTYPES, load_model
from ponder.rollout.factory import make_generator
from ponder.rollout.openai_api import TeacherConfig


@dataclass(frozen=True)
class EvalStageConfig:
    """`size` items of `task` (0: a file task's every row), `samples` per item with `sampling` (R1's
    defaults: temperature 0.6, top-p 0.95), prompts rendered by `prompt`; of `model` or of `teacher`."""

    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    sampling: SamplingConfig = field(
        default_factory=lambda: SamplingConfig(temperature=0.6, top_p=0.95, max_new_tokens=512)
    )
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    size: int = 0
    samples: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive("size", self.size, allow_zero=True)
        check_positive("samples", self.samples)
        if self.size == 0 and self.task.name != "file":
            raise ConfigError(f"size = 0 (every row) needs a file task, not task.name = {self.task.name!r}")
        self.teacher.check_alone(self.model)


def run_eval(cfg: EvalStageConfig, run_dir: Path) -> dict[str, Any]:
    """Evaluate, write results.jsonl and summary.json, return the summary."""
    run_dir.mkdir(parents=True, exist_ok=True)
    task = build_task(cfg.task.name, **cfg.task.args)
    items = list(islice(task.items(cfg.seed), cfg.size or len(task)))
    if cfg.teacher.url:
        generator, tokenizer = cfg.teacher.build(), None
    else:
        generator, tokenizer = _local_generator(cfg, items)
    result = evaluate_items(generator, tokenizer, items, cfg.prompt, cfg.sampling, cfg.samples, cfg.seed)
    rows = result["rows"]
    with (run_dir / "results.jsonl").open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    k = result["samples"]
    summary: dict[str, Any] = {"items": len(items), "samples": k, "model": cfg.teacher.source(cfg.model)}
    pairs = (
        ("pass@1", "accuracy_lenient"),
        ("accuracy", "accuracy"),
        ("format", "format"),
        ("language_consistency", "language_consistency"),
    )
    for key, of in pairs:
        score = (lambda v: float(v > 0)) if of != "language_consistency" else float
        per_item = [sum(score(r[of]) for r in rows[i * k : (i + 1) * k]) / k for i in range(len(items))]
        mean, half = mean_ci95(per_item)
        summary[key], summary[f"{key}_ci95"] = mean, half
    summary["response_len_mean"] = result["response_len_mean"]
    if cfg.teacher.url:  # a chat API returns text, not tokens: no token count to report
        summary["response_len_mean"] = None
    summary["truncated"] = sum(not r["finished"] for r in rows) / max(1, len(rows))
    summary["reflection"] = result["reflection"]  # share of samples with a reflection word ("wait", "check")
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _local_generator(cfg: EvalStageConfig, items: list) -> tuple[Any, Any]:
    """(generator, tokenizer) over `cfg.model`, its KV cache sized for every sample at once."""
    model, tokenizer = load_model(cfg.model.name, dtype=cfg.model.dtype, device=cfg.model.device)
    model.eval()
    longest = max(len(prompt_ids(it.prompt, tokenizer, cfg.prompt)) for it in items)
    generator = make_generator(
        model,
        tokenizer,
        cfg.rollout,
        AUTOCAST_DTYPES[cfg.model.autocast],
        len(items) * cfg.samples,
        longest + cfg.sampling.max_new_tokens,
    )
    return generator, tokenizer
