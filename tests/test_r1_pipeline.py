"""The whole R1 pipeline (recipes/r1_tiny.toml) on a tiny model: every stage's artefacts, then the cache."""

from __future__ import annotations

import json
from pathlib import Path

from ponder.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_r1_tiny_runs_every_stage_then_skips_them(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # the recipe names its data files relative to the project
    run = tmp_path / "r1"
    assert main(["train", "r1_tiny", f"--pipeline.dir={run}"]) == 0
    stages = [
        "cold_start_data",
        "cold_start",
        "reasoning_rl",
        "rejection",
        "sft",
        "eval_sft",
        "reward_model",
        "rl_all",
    ]
    summary = json.loads((run / "pipeline.json").read_text())
    assert [r["stage"] for r in summary] == stages and not any(r["cached"] for r in summary)

    # cold-start data: verified chains of thought in the R1 format
    rows = _jsonl(run / "cold_start_data" / "data.jsonl")
    assert len(rows) == 96 and all(r["response"].startswith("<think>") for r in rows)
    # every model-producing stage leaves an HF directory
    for name in ("cold_start", "reasoning_rl", "sft", "reward_model", "rl_all"):
        assert (run / name / "model" / "config.json").exists(), name
    # SFT stages log a falling loss; the cold start learned its data
    cold = json.loads((run / "cold_start" / "summary.json").read_text())
    assert cold["train_loss_last"] < 0.5 * cold["train_loss_first"]
    # rejection sampling: counts that add up, kept rows with provenance, general rows mixed in
    stats = json.loads((run / "rejection" / "stats.json").read_text())
    assert stats["generated"] == 64
    assert stats["kept"] + sum(stats["removed"].values()) == stats["generated"]
    data = _jsonl(run / "rejection" / "data.jsonl")
    assert len(data) == stats["rows"] > 0
    assert {r["kind"] for r in data} == {"reasoning", "general"}
    assert all("prompt_id" in r and "messages" in r for r in data)
    # the evaluation stage: pass@1 over k samples with an interval
    ev = json.loads((run / "eval_sft" / "summary.json").read_text())
    assert ev["items"] == 8 and ev["samples"] == 2 and "pass@1_ci95" in ev
    # the reward model separates the held-out preference pairs
    rm = json.loads((run / "reward_model" / "summary.json").read_text())
    assert rm["eval_accuracy_after"] >= 0.75
    # RL stages write their metrics and held-out evaluations
    for name in ("reasoning_rl", "rl_all"):
        assert len(_jsonl(run / name / "metrics.jsonl")) >= 2
        assert len(_jsonl(run / name / "eval.jsonl")) == 2
    # RL for all scenarios: general prompts and the reward model only in the last step
    steps = [r for r in _jsonl(run / "rl_all" / "metrics.jsonl") if "general_frac" in r]
    assert steps[0]["general_frac"] == 0 and steps[-1]["general_frac"] > 0
    assert steps[-1]["reward/harmless"] == steps[-1]["reward/harmless"]  # scored (not NaN) in the last step
    out = capsys.readouterr().out
    assert "stage" in out and "rl_all" in out  # the summary table

    # a second run finds every stage finished
    assert main(["train", "r1_tiny", f"--pipeline.dir={run}"]) == 0
    assert all(r["cached"] for r in json.loads((run / "pipeline.json").read_text()))
    assert "cached" in capsys.readouterr().out
