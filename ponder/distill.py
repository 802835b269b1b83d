"""`ponder distill`: a strong teacher's verified samples make a small student reason by SFT alone (the
distillation of DeepSeek-R1 section 2.4), as the pipeline recipe `recipes/distill.toml` with options:

    ponder distill                                               # the recipe as it is (a local teacher)
    ponder distill --teacher http://127.0.0.1:8000/v1 --teacher-model Qwen/Qwen2.5-7B-Instruct
    ponder distill --teacher Qwen/Qwen2.5-1.5B-Instruct --student tiny --data train.jsonl --dir runs/d1
    ponder distill --stages.teacher_data.rejection.prompts=500   # any pipeline override, after the options

The recipe's stages play fixed roles, and each option rewrites the tables of its stages:
  --teacher MODEL_OR_URL   eval_teacher, teacher_data: a model ponder loads, or (http:// or https://) an
                           OpenAI-compatible server: vLLM, SGLang, `ponder serve`, a hosted API (its key in
                           $OPENAI_API_KEY, or the variable named by `teacher.api_key_env`)
  --teacher-model NAME     the name the server knows the teacher by (default: the first of its /models)
  --student MODEL          eval_student_before, sft: the student's starting weights
  --data FILE              teacher_data: the training questions (GSM8K-format JSONL unless the recipe's
                           file task says otherwise)
  --test FILE              every eval stage: the test questions
Stages then run as `ponder train` runs a pipeline (cached, `--from STAGE`), and the end prints the teacher's
and the student's pass@1 before and after.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

from ponder.config import ConfigError

TEACHER_STAGES = ("eval_teacher", "teacher_data")
STUDENT_STAGES = ("eval_student_before", "sft")
EVALS = (
    ("teacher", "eval_teacher"),
    ("student before", "eval_student_before"),
    ("student after", "eval_student_after"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `ponder distill`."""
    p.add_argument(
        "--teacher", metavar="MODEL_OR_URL", help="a model, or the URL of an OpenAI-compatible API"
    )
    p.add_argument("--teacher-model", metavar="NAME", help="the model name to send to the teacher's API")
    p.add_argument("--student", metavar="MODEL", help="the student's starting weights")
    p.add_argument("--data", metavar="FILE", help="training questions for the teacher (GSM8K-format JSONL)")
    p.add_argument("--test", metavar="FILE", help="test questions for every evaluation")
    p.add_argument("--dir", metavar="DIR", help="the pipeline directory (default: runs/<recipe>)")
    p.add_argument("--recipe", default="distill", help="the pipeline recipe (default: distill)")
    p.add_argument(
        "--from", dest="start_from", metavar="STAGE", help="run STAGE and the stages after it again"
    )


def is_url(teacher: str) -> bool:
    """Whether `--teacher` names a server (http:// or https://) rather than a model."""
    return teacher.startswith(("http://", "https://"))


def apply_options(
    data: dict[str, Any],
    teacher: str | None = None,
    teacher_model: str | None = None,
    student: str | None = None,
    train: str | None = None,
    test: str | None = None,
) -> dict[str, Any]:
    """A copy of the pipeline recipe `data` with the options written into their stages' tables."""
    data = copy.deepcopy(data)
    stages = data.setdefault("stages", {})

    def table(name: str, option: str) -> dict[str, Any]:
        if name not in stages:
            raise ConfigError(f"{option}: the recipe has no [stages.{name}] to apply it to")
        return stages[name]

    for name in TEACHER_STAGES if teacher else ():
        t = table(name, "--teacher")
        if is_url(teacher):  # the server replaces the local model: a stage samples one of them
            t.pop("model", None)
            t["teacher"] = {**t.get("teacher", {}), "url": teacher}
        else:
            t.pop("teacher", None)
            t["model"] = {**t.get("model", {}), "name": teacher}
    if teacher_model:
        tables = [table(n, "--teacher-model") for n in TEACHER_STAGES]
        if not all(t.get("teacher", {}).get("url") for t in tables):
            raise ConfigError(
                "--teacher-model names the model a teacher's API serves; give --teacher URL too"
            )
        for t in tables:
            t["teacher"]["model"] = teacher_model
    for name in STUDENT_STAGES if student else ():
        t = table(name, "--student")
        t["model"] = {**t.get("model", {}), "name": student}
    if train:
        t = table("teacher_data", "--data")
        t["task"] = _file_task(t.get("task", {}), train)
    for t in stages.values() if test else ():
        if t.get("kind") == "eval":
            t["task"] = _file_task(t.get("task", {}), test, shuffle=False)
    return data


def _file_task(task: dict[str, Any], path: str, **defaults: Any) -> dict[str, Any]:
    """The task table reading `path`: a file task keeps its other arguments (format, fields); any other
    task becomes a GSM8K-format file task."""
    if task.get("name") == "file":
        return {**task, "args": {**task.get("args", {}), "path": path}}
    return {"name": "file", "args": {"format": "gsm8k", **defaults, "path": path}}


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    """`ponder distill`: the recipe with the options applied, then `--key=value` overrides; runs it."""
    from ponder.cli import recipe_path
    from ponder.config import merge_tables, parse_overrides, read_toml
    from ponder.pipeline import parse, run_pipeline

    path = recipe_path(args.recipe)
    data = apply_options(
        read_toml(path), args.teacher, args.teacher_model, args.student, args.data, args.test
    )
    if args.dir:
        data.setdefault("pipeline", {})["dir"] = args.dir
    data = merge_tables(data, parse_overrides(overrides), depth=4)
    directory, _ = parse(data)
    root = directory or Path("runs") / path.stem
    print(f"pipeline directory: {root}", flush=True)
    rows = run_pipeline(data, root, args.start_from)
    print(report(rows), flush=True)
    return 0


def report(rows: list[dict[str, Any]]) -> str:
    """One line: pass@1 (± the 95% interval) of the teacher and of the student before and after."""
    by_stage = {r["stage"]: r.get("summary") or {} for r in rows}
    parts = []
    for label, stage in EVALS:
        s = by_stage.get(stage, {})
        if isinstance(s.get("pass@1"), float):
            half = s.get("pass@1_ci95")
            parts.append(f"{label} {s['pass@1']:.3f}" + (f" ± {half:.3f}" if isinstance(half, float) else ""))
    return "distill: pass@1 " + ("; ".join(parts) if parts else "(no evaluation stages)")
