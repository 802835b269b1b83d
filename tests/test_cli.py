"""The `ponder` CLI: the smoke recipe end to end, resume, report, and errors that name the problem."""

import subprocess
import sys
import time

from ponder.cli import main
from ponder.train.metrics import read_jsonl


def test_smoke_recipe_through_the_cli(tmp_path):
    run = tmp_path / "run"
    started = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "ponder.cli", "train", "smoke", f"--run.dir={run}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert time.time() - started < 120
    assert "4 steps" in proc.stdout
    assert len(read_jsonl(run / "metrics.jsonl")) == 4
    assert (run / "checkpoints" / "step-4" / "model.safetensors").exists()


def test_resume_extends_a_finished_run_and_report_plots(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "smoke", f"--run.dir={run}", "--grpo.steps=2", "--run.progress=false"]) == 0
    assert main(["train", "--resume", str(run), "--grpo.steps=3"]) == 0
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2, 3]
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert "3 steps" in out and (run / "curves.png").exists()
    assert "distinct_frac" in out and "--- step" not in out
    assert main(["report", str(run), "--samples", "1"]) == 0
    out = capsys.readouterr().out
    logged = read_jsonl(run / "samples.jsonl")
    first, last = logged[0], [r for r in logged if r["step"] == 3][0]
    assert f"--- step 1: {first['prompt']!r}" in out and f"--- step 3: {last['prompt']!r}" in out
    assert first["response"][:40] in out


def test_cli_errors_name_the_problem(tmp_path, capsys):
    assert main(["train", "no_such_recipe"]) == 2
    assert "no recipe named 'no_such_recipe'" in capsys.readouterr().err
    assert main(["train", "smoke", "--grpo.stpes=3"]) == 2
    assert "did you mean 'steps'" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "no config.toml" in capsys.readouterr().err
    run = tmp_path / "exists"
    run.mkdir()
    (run / "config.toml").write_text("")
    assert main(["train", "smoke", f"--run.dir={run}"]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_bench_rollout_engine_options_follow_the_flags():
    """`ponder bench rollout`: bursts and graph sampling on by default; --no-graph-sampling turns both off
    (bursts need the sampling in the graphs), --decode-steps sets the burst length."""
    from ponder.bench.rollout import engine_options
    from ponder.cli import build_parser

    parse = lambda *a: build_parser().parse_args(["bench", "rollout", *a])  # noqa: E731
    assert engine_options(parse()) == dict(
        decode_splits=1, graph_sampling=True, decode_steps=8, max_prefill_tokens=8192
    )
    assert engine_options(parse("--no-graph-sampling"))["decode_steps"] == 1
    assert engine_options(parse("--decode-steps", "4", "--decode-splits", "2")) == dict(
        decode_splits=2, graph_sampling=True, decode_steps=4, max_prefill_tokens=8192
    )
    assert engine_options(parse("--max-prefill-tokens", "32768"))["max_prefill_tokens"] == 32768
