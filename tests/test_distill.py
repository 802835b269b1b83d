"""Distillation: `ponder distill` over recipes/distill_tiny.toml with the teacher served by `ponder serve` on
loopback (every teacher sample travels over HTTP), then how the options rewrite the recipe's stages.

python -m pytest -q tests/test_distill.py
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ponder.cli import main
from ponder.config import ConfigError, read_toml
from ponder.distill import apply_options, report
from ponder.pipeline import KINDS, _resolve, parse

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["eval_teacher", "eval_student_before", "teacher_data", "sft", "eval_student_after"]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, log: Path, seconds: float = 90) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ponder serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(
        f"ponder serve did not answer at {url} within {seconds} s:\n{log.read_text()[-3000:]}"
    )


@pytest.fixture
def served_teacher(tmp_path):
    """`ponder serve tiny:small` in a subprocess; yields (base URL, the server's request log)."""
    port, log = _free_port(), tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ponder.cli",
                "serve",
                "tiny:small",
                "--port",
                str(port),
                "--max-batch",
                "16",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_up(url, proc, log)
        yield url, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_distill_tiny_with_the_teacher_behind_ponder_serve(served_teacher, tmp_path, monkeypatch, capsys):
    url, log = served_teacher
    monkeypatch.chdir(ROOT)  # the recipe names its general data relative to the project
    run = tmp_path / "distill"
    args = ["distill", "--recipe", "distill_tiny", "--teacher", url, "--teacher-model", "tiny:small"]
    args += ["--dir", str(run), "--stages.teacher_data.teacher.concurrency=4"]
    assert main(args) == 0
    rows = json.loads((run / "pipeline.json").read_text())
    assert [r["stage"] for r in rows] == STAGES and not any(r["cached"] for r in rows)

    # the teacher was sampled over HTTP: one chat request per prompt (n samples each), as the server logged
    stats = json.loads((run / "teacher_data" / "stats.json").read_text())
    assert stats["model"] == f"tiny:small@{url}" and stats["generated"] == 8 * 2
    assert stats["teacher"]["requests"] == 8 and stats["teacher"]["retries"] == 0
    assert stats["teacher"]["completion_tokens"] > 0  # the server's usage, summed
    served = log.read_text().count('"POST /v1/chat/completions HTTP/1.1" 200')
    assert served == 8 + 4  # teacher_data: 8 prompts; eval_teacher: 4 items (2 samples in each request)
    # filter counts that add up; the dropped samples with their reasons; the general rows mixed in
    assert stats["kept"] + sum(stats["removed"].values()) == stats["generated"]
    rejected = _jsonl(run / "teacher_data" / "rejected.jsonl")
    assert len(rejected) == stats["generated"] - stats["kept"] and all(r["reason"] for r in rejected)
    data = _jsonl(run / "teacher_data" / "data.jsonl")
    assert len(data) == stats["rows"] == stats["kept"] + 8 and all("messages" in r for r in data)

    # the student was trained from that file and evaluated before and after; the teacher through the API
    sft = json.loads((run / "sft" / "summary.json").read_text())
    assert (
        sft["examples"] == len(data) and sft["steps"] > 0 and (run / "sft" / "model" / "config.json").exists()
    )
    teacher = json.loads((run / "eval_teacher" / "summary.json").read_text())
    assert teacher["model"] == f"tiny:small@{url}" and teacher["items"] == 4 and teacher["samples"] == 2
    assert len(_jsonl(run / "eval_teacher" / "results.jsonl")) == 8
    before = json.loads((run / "eval_student_before" / "summary.json").read_text())
    after = json.loads((run / "eval_student_after" / "summary.json").read_text())
    assert before["model"] == "tiny" and after["model"] == str(run / "sft" / "model")
    assert "distill: pass@1 teacher" in capsys.readouterr().out

    assert main(args) == 0  # the same again: every stage cached
    assert all(r["cached"] for r in json.loads((run / "pipeline.json").read_text()))


def test_options_rewrite_the_stages_of_their_roles():
    recipe = read_toml(ROOT / "recipes" / "distill.toml")
    api = apply_options(recipe, teacher="https://api.example.com/v1", teacher_model="big", test="t.jsonl")
    for name in ("eval_teacher", "teacher_data"):
        assert "model" not in api["stages"][name]  # a stage samples a model or a teacher, not both
        teacher = {"url": "https://api.example.com/v1", "model": "big", "concurrency": 32}
        assert api["stages"][name]["teacher"] == teacher  # the recipe's own teacher settings are kept
    evals = [t for t in api["stages"].values() if t["kind"] == "eval"]
    assert len(evals) == 3 and all(t["task"]["args"]["path"] == "t.jsonl" for t in evals)
    assert evals[0]["task"]["args"]["format"] == "gsm8k" and evals[0]["task"]["args"]["shuffle"] is False
    assert recipe["stages"]["eval_teacher"]["model"]["name"] == "Qwen/Qwen2.5-1.5B-Instruct"  # not mutated

    local = apply_options(api, teacher="teacher-dir", student="tiny", train="train.jsonl")
    assert local["stages"]["teacher_data"]["model"] == {"name": "teacher-dir"}
    assert "teacher" not in local["stages"]["teacher_data"]
    assert local["stages"]["sft"]["model"] == {"name": "tiny", "autocast": "bfloat16"}
    assert local["stages"]["eval_student_before"]["model"]["name"] == "tiny"
    assert local["stages"]["eval_student_after"]["model"]["name"] == "@sft"  # the trained student
    assert local["stages"]["teacher_data"]["task"]["args"]["path"] == "train.jsonl"

    tiny = apply_options(read_toml(ROOT / "recipes" / "distill_tiny.toml"), train="q.jsonl")
    assert tiny["stages"]["teacher_data"]["task"] == {
        "name": "file",
        "args": {"format": "gsm8k", "path": "q.jsonl"},
    }
    with pytest.raises(ConfigError, match="--teacher URL too"):
        apply_options(recipe, teacher_model="big")
    with pytest.raises(ConfigError, match=r"--student: the recipe has no \[stages.eval_student_before\]"):
        apply_options({"stages": {}}, student="tiny")


@pytest.mark.parametrize("name", ["distill", "distill_tiny"])
@pytest.mark.parametrize("teacher", [None, "http://127.0.0.1:8000/v1"])
def test_distill_recipes_validate_with_either_teacher(name, teacher, tmp_path):
    data = apply_options(read_toml(ROOT / "recipes" / f"{name}.toml"), teacher=teacher)
    _, stages = parse(data)
    assert [s.name for s in stages] == STAGES
    for stage in stages:  # every stage's table builds its config (files are only read when a stage runs)
        KINDS[stage.kind].build(
            _resolve(stage.table, tmp_path), f"stages.{stage.name}.", tmp_path / stage.name
        )
    table = next(s.table for s in stages if s.name == "teacher_data")  # without its `kind`
    both = {**table, "model": {"name": "x"}, "teacher": {"url": "http://h:1/v1"}}
    with pytest.raises(ConfigError, match="both set"):
        KINDS["rejection"].build(both, "stages.teacher_data.", tmp_path)


def test_report_line():
    rows = [
        {"stage": "eval_teacher", "summary": {"pass@1": 0.75, "pass@1_ci95": 0.05}},
        {"stage": "eval_student_before", "summary": {"pass@1": 0.0, "pass@1_ci95": 0.0}},
        {"stage": "eval_student_after", "summary": {"pass@1": 0.25, "pass@1_ci95": float("nan")}},
    ]
    line = report(rows)
    assert line.startswith("distill: pass@1 teacher 0.750 ± 0.050; student before 0.000 ± 0.000")
    assert "student after 0.250" in line
    assert report([]) == "distill: pass@1 (no evaluation stages)"
