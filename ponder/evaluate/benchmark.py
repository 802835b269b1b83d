"""`ponder eval`: models on a benchmark file, k samples per problem, reported the way DeepSeek-R1 does.

    ponder eval --model smollm2-135m --model runs/r1/reasoning_rl/model \\
        --data ../shared/data/aime24.jsonl --k 16 --max-new-tokens 4096

R1's protocol (arXiv:2501.12948 section 3, "Evaluation Setup"): sampling at temperature 0.6 and top-p 0.95,
k responses per problem, pass@1 = mean correctness over the k, and cons@k = majority vote. Per model it
reports pass@1 with a 95% interval across problems, cons@k, pass@j (unbiased estimator) for j = 1, 2, 4, ..
up to k, strict R1 accuracy (the `<answer>` block must hold the right answer) and the format rate, response
length (mean, max tokens), the truncation rate (hit --max-new-tokens) and the reflection-word rate.

Where the answer is read (`extract_math_answer(mode="boxed", fallback="last_number")`): the `<answer>` block,
else the last `\\boxed{}` after the reasoning, else the last number after it; text inside a `<think>` that
never closes is not an answer. Code (HumanEval) runs the response's program against the tests in the
sandbox; cons@k is not defined for code (programs have no equivalence to vote over) and is left out.

Writes OUT/<model>/results.jsonl (one row per problem: its k responses, answers, verdicts, the voted
answer), OUT/<model>/summary.json, and OUT/comparison.json / comparison.md (the table printed at the end).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ponder.config import R1_ZERO_SYSTEM, ConfigError, PromptConfig, RolloutConfig, SamplingConfig
from ponder.data.files import DatasetError
from ponder.data.tasks import Item
from ponder.data.templates import prompt_ids
from ponder.evaluate.metrics import has_reflection, mean_ci95, pass_at_k, pass_at_ks, vote_index
from ponder.evaluate.problems import FORMATS, Problems, load_problems
from ponder.model import AUTOCAST_DTYPES
from ponder.model.load import ModelNotFoundError, load_model
from ponder.rewards import Reference, Unscorable, get_checker
from ponder.rewards.code import code_pass, extract_program
from ponder.rewards.extract import answer_block
from ponder.rewards.math import extract_math_answer
from ponder.rewards.rules import format_reward
from ponder.rollout.base import Completion, Generator
from ponder.rollout.factory import make_generator


class _Once(argparse.Action):
    """An option that may be given once: a second value is an error, not silently the one that counts."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        if getattr(namespace, self.dest, None) is not None:
            parser.error(
                f"{option_string} given twice; one benchmark per call (repeat --model to compare models)"
            )
        setattr(namespace, self.dest, values)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `ponder eval` options (R1's sampling defaults)."""
    a = parser.add_argument
    a("--model", action="append", required=True, metavar="M", help="model (repeat to compare several)")
    a("--data", required=True, action=_Once, metavar="FILE", help="benchmark file: JSONL, JSON, Parquet, CSV")
    a("--k", type=int, default=4, help="samples per problem (default 4)")
    a("--format", default="auto", choices=("auto", *FORMATS), help="answer format (default: detected)")
    a("--temperature", type=float, default=0.6, help="sampling temperature (R1: 0.6; 0 = greedy, k = 1)")
    a("--top-p", type=float, default=0.95, help="nucleus sampling (R1: 0.95)")
    a("--max-new-tokens", type=int, default=1024, help="response length limit (R1: 32768)")
    a("--limit", type=int, default=None, metavar="N", help="only the first N problems")
    a("--prompt-mode", default="chat", choices=("chat", "r1_zero"), help="chat template or R1-Zero text")
    a("--system", default=R1_ZERO_SYSTEM, help="system text (default: the R1-Zero instruction)")
    a("--prefill", default="<think>", help="text that opens the response (default '<think>')")
    a("--out", default=None, metavar="DIR", help="output directory (default runs/eval-<data>-<time>)")
    a("--backend", default="ponder", choices=("ponder", "hf"), help="generation backend")
    a("--max-batch", type=int, default=64, help="sequences generated at once")
    a("--seed", type=int, default=0, help="sampling seed")
    a("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    a("--dtype", default="float32", choices=("float32", "bfloat16", "float16"), help="parameter dtype")
    a("--autocast", default="none", choices=tuple(AUTOCAST_DTYPES), help="mixed precision while generating")
    a("--workers", type=int, default=min(8, os.cpu_count() or 1), help="threads scoring responses")


def run(args: argparse.Namespace) -> int:
    """Evaluate every `--model` on `--data`; data and model problems raise ConfigError (exit code 2)."""
    _check_args(args)
    prompt = PromptConfig(mode=args.prompt_mode, system=args.system, prefill=args.prefill)
    sampling = SamplingConfig(
        temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens
    )
    try:
        problems = load_problems(args.data, args.format, args.limit)
    except (DatasetError, FileNotFoundError) as err:
        raise ConfigError(str(err)) from None
    k = 1 if args.temperature == 0 else args.k
    if k != args.k:
        print(f"temperature 0 is greedy: the k samples would agree; using k = 1 instead of {args.k}")
    print(f"{problems.path}: {len(problems.items)} problems, format {problems.format} ({problems.why})")
    if problems.skipped:
        print(
            f"{problems.path}: {problems.skipped} rows left out: math-verify cannot parse their gold answer"
        )
    out = Path(args.out or f"runs/eval-{Path(args.data).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    summaries, slugs = [], set()
    for name in args.model:
        slug = model_slug(name, slugs)
        slugs.add(slug)
        summary = evaluate_model(name, problems, prompt, sampling, k, args, out / slug)
        summaries.append(summary)
        print(_one_line(summary))
    table = comparison_markdown(summaries)
    (out / "comparison.json").write_text(json.dumps(summaries, indent=1))
    (out / "comparison.md").write_text(table)
    print(f"\n{table}\nresults: {out}")
    return 0


def _check_args(args: argparse.Namespace) -> None:
    for key in ("k", "max_new_tokens", "max_batch", "workers"):
        if getattr(args, key) < 1:
            raise ConfigError(f"--{key.replace('_', '-')} = {getattr(args, key)} must be >= 1")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit = {args.limit} must be >= 1")


def model_slug(name: str, taken: set[str]) -> str:
    """A directory name for a model: the last two parts of a path or hub id, ".gguf" dropped, unique."""
    parts = [p for p in name.removesuffix(".gguf").split("/") if p not in ("", ".", "..")]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(parts[-2:])).strip("-.") or "model"
    unique, n = slug, 2
    while unique in taken:
        unique, n = f"{slug}-{n}", n + 1
    return unique


def evaluate_model(
    name: str,
    problems: Problems,
    prompt: PromptConfig,
    sampling: SamplingConfig,
    k: int,
    args: argparse.Namespace,
    out: Path,
) -> dict[str, Any]:
    """Generate k responses per problem with model `name`, score them, write results and the summary."""
    try:
        model, tokenizer = load_model(name, dtype=args.dtype, device=args.device)
        ids = [prompt_ids(it.prompt, tokenizer, prompt) for it in problems.items]
    except (ModelNotFoundError, FileNotFoundError, ModuleNotFoundError, ValueError) as err:
        raise ConfigError(f"--model {name}: {err}") from None
    rollout = RolloutConfig(backend=args.backend, max_batch=args.max_batch)
    generator = make_generator(
        model,
        tokenizer,
        rollout,
        AUTOCAST_DTYPES[args.autocast],
        _chunk(args.max_batch, k) * k,
        max(map(len, ids)) + args.max_new_tokens,
    )
    started = time.perf_counter()
    rows = _generate_and_score(generator, ids, problems, sampling, k, args, name)
    seconds = time.perf_counter() - started
    del generator, model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    out.mkdir(parents=True, exist_ok=True)
    with (out / "results.jsonl").open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    summary = {
        "model": name,
        "dir": out.name,
        "data": problems.path,
        "format": problems.format,
        "skipped_rows": problems.skipped,
        **summarize(rows, k, problems.format),
        "sampling": {
            "temperature": args.temperature,
            "top_p": args.top_p,
            "max_new_tokens": args.max_new_tokens,
        },
        "prompt": {"mode": args.prompt_mode, "prefill": args.prefill, "system": args.system},
        "backend": args.backend,
        "seed": args.seed,
        "seconds": round(seconds, 2),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _chunk(max_batch: int, k: int) -> int:
    """Problems per generate() call: small enough that the bar moves, big enough (4 x max_batch
    sequences) that the batch stays full while a call's last sequences finish."""
    return max(1, 4 * max_batch // k)


def _generate_and_score(
    generator: Generator,
    ids: list[list[int]],
    problems: Problems,
    sampling: SamplingConfig,
    k: int,
    args: argparse.Namespace,
    label: str,
) -> list[dict[str, Any]]:
    """Generate chunk after chunk of problems; each chunk is scored on threads while the next generates
    (sandboxed code and math-verify run in other processes, generation releases the GIL)."""
    items, fmt, chunk = problems.items, problems.format, _chunk(args.max_batch, k)
    futures: list[Future] = []
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("problems  {task.fields[speed]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    tokens, started = 0, time.perf_counter()
    with ThreadPoolExecutor(args.workers, thread_name_prefix="eval-score") as pool, Progress(*columns) as bar:
        task = bar.add_task(label, total=len(items), speed="")
        for start in range(0, len(items), chunk):
            batch = [p for p in ids[start : start + chunk] for _ in range(k)]
            completions = generator.generate(batch, sampling, args.seed)
            for j in range(len(batch) // k):
                group = completions[j * k : (j + 1) * k]
                futures.append(pool.submit(score_problem, items[start + j], fmt, group, args.prefill))
            tokens += sum(len(c.token_ids) for c in completions)
            speed = f"{tokens / (time.perf_counter() - started):.0f} tok/s"
            bar.update(task, advance=len(batch) // k, speed=speed)
        return [f.result() for f in futures]


def _verdict(check: Callable[[str, Reference], Any], answer: str, ref: Reference) -> bool | None:
    """The checker's verdict; None when it could not judge (a math-verify timeout, a sandbox failure)."""
    try:
        return bool(check(answer, ref))
    except Unscorable:
        return None


def score_problem(item: Item, fmt: str, completions: list[Completion], prefill: str) -> dict[str, Any]:
    """One problem's row: its k responses, extracted answers, verdicts (lenient and strict), voted answer."""
    responses = [prefill + c.text for c in completions]
    verdicts: list[bool | None]
    if fmt == "code":
        answers = [extract_program(r) for r in responses]
        verdicts = [_verdict(code_pass, r, item.ref) for r in responses]  # 1.0 / 0.0 -> bool
        strict_found = [answer_block(r) is not None for r in responses]
        voted, cons = None, None
    else:
        check = get_checker(item.ref.checker)
        answers = [extract_math_answer(r, mode="boxed", fallback="last_number") for r in responses]
        verdicts = [False if a is None else _verdict(check, a, item.ref) for a in answers]
        strict_found = [extract_math_answer(r, mode="answer") is not None for r in responses]

        def same(a: str, b: str) -> bool:
            return bool(_verdict(check, b, replace(item.ref, answer=a)))

        index = vote_index(answers, same)
        voted = None if index is None else answers[index]
        cons = index is not None and bool(verdicts[index])
    correct = [bool(v) for v in verdicts]
    return {
        "id": item.id,
        "question": item.prompt,
        "gold": item.ref.answer,
        "n_correct": sum(correct),
        "pass@1": sum(correct) / len(correct),
        "voted": voted,
        "cons": cons,
        "answers": answers,
        "correct": correct,
        "strict": [s and ok for s, ok in zip(strict_found, correct, strict=True)],
        "format": [format_reward(r, item.ref) == 1.0 for r in responses],
        "unscorable": sum(v is None for v in verdicts),
        "tokens": [len(c.token_ids) for c in completions],
        "finished": [bool(c.finished) for c in completions],
        "reflection": [has_reflection(r) for r in responses],
        "responses": responses,
    }


def summarize(rows: list[dict[str, Any]], k: int, fmt: str) -> dict[str, Any]:
    """The model's figures over problem rows (`score_problem`): means over problems, intervals across them."""
    summary: dict[str, Any] = {"problems": len(rows), "k": k}
    summary["pass@1"], half = mean_ci95([r["pass@1"] for r in rows])
    summary["pass@1_ci95"] = _finite(half)
    for j in pass_at_ks(k)[1:]:
        summary[f"pass@{j}"] = _mean([pass_at_k(k, r["n_correct"], j) for r in rows])
    summary[f"cons@{k}"] = None if fmt == "code" else _mean([float(r["cons"]) for r in rows])
    strict, strict_half = mean_ci95([sum(r["strict"]) / k for r in rows])
    summary["accuracy_strict"], summary["accuracy_strict_ci95"] = strict, _finite(strict_half)

    def every(key: str) -> list[Any]:  # one value per sample, over all problems
        return [value for r in rows for value in r[key]]

    summary["format_rate"] = _mean([float(f) for f in every("format")])
    summary["response_tokens_mean"] = _mean([float(t) for t in every("tokens")])
    summary["response_tokens_max"] = max(every("tokens"))
    summary["truncated"] = _mean([float(not f) for f in every("finished")])
    summary["reflection"] = _mean([float(f) for f in every("reflection")])
    summary["unscorable"] = sum(r["unscorable"] for r in rows)
    return summary


def _finite(value: float) -> float | None:
    """None for NaN (one problem has no spread): JSON readers other than Python's reject NaN."""
    return None if math.isnan(value) else value


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values) if values else float("nan")


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def comparison_markdown(summaries: list[dict[str, Any]]) -> str:
    """A markdown table, one row per model; rates in percent."""
    k = summaries[0]["k"]
    passes = [f"pass@{j}" for j in pass_at_ks(k)[1:]]
    head = [
        "model",
        "pass@1 ± 95%",
        f"cons@{k}",
        *passes,
        "strict",
        "format",
        "tokens mean",
        "tokens max",
        "truncated",
        "reflection",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        half = s["pass@1_ci95"]
        ci = "" if half is None else f" ± {100 * half:.1f}"
        cells = [
            s["model"],
            _pct(s["pass@1"]) + ci,
            _pct(s[f"cons@{k}"]),
            *(_pct(s[p]) for p in passes),
            _pct(s["accuracy_strict"]),
            _pct(s["format_rate"]),
            f"{s['response_tokens_mean']:.0f}",
            str(s["response_tokens_max"]),
            _pct(s["truncated"]),
            _pct(s["reflection"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _one_line(s: dict[str, Any]) -> str:
    k = s["k"]
    return (
        f"{s['model']}: pass@1 {_pct(s['pass@1'])}% (± {_pct(s['pass@1_ci95'])}), "
        f"cons@{k} {_pct(s[f'cons@{k}'])}%, pass@{k} {_pct(s.get(f'pass@{k}', s['pass@1']))}%, "
        f"{s['seconds']:.0f} s"
    )
