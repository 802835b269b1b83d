"""Pipeline recipes: stage checks before anything runs, references between stages, caching, --from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ponder.config import ConfigError
from ponder.pipeline import parse, run_pipeline

TINY_GRPO = {
    "kind": "grpo",
    "model": {"name": "tiny"},
    "task": {"name": "arithmetic", "args": {"digits": 1}},
    "prompt": {"mode": "chat", "system": ""},
    "reward": {"weights": {"accuracy_lenient": 1.0}},
    "sampling": {"temperature": 1.0, "max_new_tokens": 8},
    "grpo": {"steps": 2, "prompts_per_step": 2, "group_size": 2, "micro_batch_size": 4, "beta": 0.0},
    "run": {"save_every": 0, "progress": False},
}


def _recipe(**stages) -> dict:
    return {"pipeline": {"stages": list(stages)}, "stages": stages}


def test_checks_fail_before_any_stage_runs(tmp_path: Path):
    with pytest.raises(ConfigError, match="no \\[stages.b\\] table"):
        parse({"pipeline": {"stages": ["a", "b"]}, "stages": {"a": {"kind": "cot_data"}}})
    with pytest.raises(ConfigError, match="stages.a.kind"):
        parse(_recipe(a={"kind": "magic"}))
    with pytest.raises(ConfigError, match="'later' is not a stage before it"):
        parse(_recipe(a={"kind": "grpo", "model": {"name": "@later"}}, later={"kind": "cot_data"}))
    with pytest.raises(ConfigError, match="not listed"):
        parse(
            {"pipeline": {"stages": ["a"]}, "stages": {"a": {"kind": "cot_data"}, "b": {"kind": "cot_data"}}}
        )
    bad = _recipe(data={"kind": "cot_data", "count": 4}, rl={**TINY_GRPO, "grpo": {"stepz": 1}})
    with pytest.raises(ConfigError, match=r"stages\.rl.*grpo\.stepz"):
        run_pipeline(bad, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # the first stage did not run


def test_stages_chain_cache_and_restart(tmp_path: Path, capsys):
    root = tmp_path / "run"
    recipe = _recipe(
        data={"kind": "cot_data", "task": {"digits": 1}, "count": 8},
        rl={
            **TINY_GRPO,
            "task": {"name": "file", "args": {"path": "@data:data", "question_field": "prompt"}},
        },
    )
    rows = run_pipeline(recipe, root)
    assert [r["stage"] for r in rows] == ["data", "rl"] and not any(r["cached"] for r in rows)
    assert (root / "data" / "data.jsonl").exists()
    assert (root / "rl" / "model" / "config.json").exists()  # an HF directory for later stages
    assert json.loads((root / "pipeline.json").read_text())[1]["kind"] == "grpo"
    stamp = (root / "rl" / "stage.json").stat().st_mtime_ns

    rows = run_pipeline(recipe, root)  # unchanged: both cached
    assert all(r["cached"] for r in rows)
    assert (root / "rl" / "stage.json").stat().st_mtime_ns == stamp
    assert "(cached)" in capsys.readouterr().out

    recipe["stages"]["data"]["count"] = 9  # upstream change: both run again
    assert [r["cached"] for r in run_pipeline(recipe, root)] == [False, False]
    assert [r["cached"] for r in run_pipeline(recipe, root, start_from="rl")] == [True, False]
    with pytest.raises(ConfigError, match="--from nope"):
        run_pipeline(recipe, root, start_from="nope")


@pytest.mark.parametrize(
    "name",
    [
        "recipes/r1_tiny",
        "recipes/r1",
        "recipes/distill",
        "recipes/distill_tiny",
        "recipes/distill_smollm2",
        "recipes/multiply",
        "benchmarks/multiply_rl_trial",
    ],
)
def test_shipped_pipeline_recipes_validate(name, tmp_path):
    from ponder.config import read_toml
    from ponder.pipeline import KINDS, _resolve

    data = read_toml(Path(__file__).resolve().parents[1] / f"{name}.toml")
    _, stages = parse(data)
    for stage in stages:  # every stage's table builds its config (files are only read when a stage runs)
        KINDS[stage.kind].build(
            _resolve(stage.table, tmp_path), f"stages.{stage.name}.", tmp_path / stage.name
        )


def test_eval_stage_reports_pass_at_1_with_an_interval(tmp_path: Path):
    from ponder.evaluate.metrics import mean_ci95

    assert mean_ci95([1.0, 0.0, 1.0, 0.0]) == pytest.approx((0.5, 1.96 * (1 / 3) ** 0.5 / 2))
    recipe = _recipe(
        ev={
            "kind": "eval",
            "model": {"name": "tiny"},
            "task": {"name": "arithmetic", "args": {"digits": 1}},
            "sampling": {"temperature": 1.0, "max_new_tokens": 8},
            "size": 3,
            "samples": 2,
        }
    )
    (row,) = run_pipeline(recipe, tmp_path / "run")
    s = row["summary"]
    assert s["items"] == 3 and s["samples"] == 2 and 0 <= s["pass@1"] <= 1 and "pass@1_ci95" in s
    assert len((tmp_path / "run" / "ev" / "results.jsonl").read_text().splitlines()) == 6


def test_cache_follows_file_contents_and_a_rerun_replaces_stale_output(tmp_path: Path):
    import os
    import shutil

    data = tmp_path / "sft.jsonl"
    rows = [
        {"prompt": f"{i} + 1 = ?", "response": f"<think>{i} + 1</think><answer>{i + 1}</answer>"}
        for i in range(6)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = _recipe(
        sft={
            "kind": "sft",
            "model": {"name": "tiny"},
            "data": {"path": str(data), "format": "chat", "max_len": 64},
            "train": {
                "epochs": 1,
                "batch_size": 4,
                "micro_batch_size": 4,
                "save_every": 0,
                "progress": False,
            },
        }
    )
    root = tmp_path / "run"
    assert [r["cached"] for r in run_pipeline(recipe, root)] == [False]
    # a copy of the same data (new mtime) keeps the cache: results do not depend on timestamps
    copy = tmp_path / "copy.jsonl"
    shutil.copy(data, copy)
    os.utime(data, (1, 1))
    shutil.copy(copy, data)
    assert [r["cached"] for r in run_pipeline(recipe, root)] == [True]
    # new contents run the stage again, in place of the old (non-resumable) output
    stale = root / "sft" / "stale.txt"
    stale.write_text("from the previous config")
    data.write_text(data.read_text() + json.dumps(rows[0]) + "\n")
    assert [r["cached"] for r in run_pipeline(recipe, root)] == [False]
    assert not stale.exists() and (root / "sft" / "model" / "config.json").exists()


def test_report_on_a_pipeline_directory_lists_stages_and_the_rl_curves(tmp_path: Path, capsys):
    from ponder.cli import main

    root = tmp_path / "run"
    recipe = _recipe(data={"kind": "cot_data", "task": {"digits": 1}, "count": 8}, rl=TINY_GRPO)
    run_pipeline(recipe, root)
    capsys.readouterr()
    assert main(["report", str(root)]) == 0
    out = capsys.readouterr().out
    assert "cot_data" in out and f"{root / 'rl'}: 2 steps" in out and (root / "rl" / "curves.png").exists()
    (root / "pipeline.json").unlink()  # a pipeline still running: its finished stages' records
    assert main(["report", str(root)]) == 0
    assert f"{root / 'rl'}: 2 steps" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert main(["report", str(tmp_path)]) == 2  # no run, no stages
    err = capsys.readouterr().err
    assert "no such directory" in err and "neither a training run" in err
