"""The `ponder` command line.

    ponder train [RECIPE] [--section.key=value ...]   run GRPO (default recipe: recipes/r1_zero.toml)
    ponder train --resume RUN_DIR [--key=value ...]   continue a run from its last checkpoint
    ponder report RUN_DIR [--samples N]               learning summary (first vs last 20% of steps) + plot;
                                                      a pipeline directory: its stage table + each RL stage
    ponder distill [--teacher MODEL_OR_URL] [--student M]   SFT of a student on a teacher's verified samples
    ponder eval --model M [--model M2] --data FILE    pass@1, cons@k, pass@k on a benchmark (R1's protocol)
    ponder serve MODEL [--port 8000]                  OpenAI-compatible HTTP API over the rollout engine
    ponder chat MODEL [--system TEXT]                 chat in the terminal (reasoning shown dimmed)
    torchrun --nproc-per-node=N -m ponder.cli train …   data parallel over N processes (GPUs)

RECIPE is a path to a TOML file or the name of one under `recipes/` (e.g. `smoke`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ponder.config import ConfigError, load_config

DEFAULT_RECIPE = "r1_zero"


def recipe_path(name: str) -> Path:
    """A recipe file from a path or a bare name looked up in ./recipes and the source tree's recipes/."""
    given = Path(name)
    if given.suffix == ".toml" or given.exists():
        return given
    for root in (Path.cwd() / "recipes", Path(__file__).resolve().parent.parent / "recipes"):
        candidate = root / f"{name}.toml"
        if candidate.exists():
            return candidate
    raise ConfigError(f"no recipe named {name!r}: not a file, and no recipes/{name}.toml")


def cmd_train(args: argparse.Namespace, overrides: list[str]) -> int:
    from ponder.stages.grpo import GRPOTrainer
    from ponder.train import checkpoint
    from ponder.train.dist import init_from_env

    init_from_env()

    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.toml").exists():
            raise ConfigError(f"--resume {run_dir}: no config.toml there; is it a ponder run directory?")
        cfg = load_config(run_dir / "config.toml", overrides)
        last = checkpoint.latest(run_dir)
        if last is None:
            print(f"{run_dir}: no checkpoint yet; starting the run from step 0", file=sys.stderr)
        trainer = GRPOTrainer(cfg, run_dir, resume_from=last)
    else:
        path = recipe_path(args.recipe or DEFAULT_RECIPE)
        from ponder.pipeline import is_pipeline

        if is_pipeline(path):
            return _train_pipeline(path, overrides, args.start_from)
        if args.start_from:
            raise ConfigError(f"--from {args.start_from}: {path} is a single-stage recipe, not a pipeline")
        cfg = load_config(path, overrides)
        run_dir = Path(cfg.run.dir or f"runs/{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}")
        if (run_dir / "config.toml").exists():
            raise ConfigError(
                f"run.dir = {str(run_dir)!r} already holds a run; use --resume {run_dir} or a new dir"
            )
        trainer = GRPOTrainer(cfg, run_dir)
    print(f"run directory: {run_dir}")
    trainer.train()
    from ponder.report import summarize

    print(summarize(run_dir))
    return 0


def _train_pipeline(path: Path, overrides: list[str], start_from: str | None) -> int:
    """A multi-stage recipe: every stage in RUN_DIR/<stage>, finished stages skipped (see ponder.pipeline)."""
    from ponder.config import parse_overrides
    from ponder.pipeline import load_pipeline, parse, run_pipeline

    data = load_pipeline(path, parse_overrides(overrides))
    directory, _ = parse(data)
    root = directory or Path("runs") / path.stem  # a fixed place, so that a second run finds the first
    print(f"pipeline directory: {root}")
    run_pipeline(data, root, start_from)
    return 0


def cmd_distill(args: argparse.Namespace, overrides: list[str]) -> int:
    from ponder.distill import run

    return run(args, overrides)


def cmd_report(args: argparse.Namespace, overrides: list[str]) -> int:
    from ponder.pipeline import summary_table
    from ponder.report import pipeline_stages, plot, sample_lines, summarize

    if overrides:
        raise ConfigError(f"report takes no overrides, got {overrides}")
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such directory (give a run directory of `ponder train`)")
    runs = [run_dir]
    if not (run_dir / "metrics.jsonl").exists():
        stages = pipeline_stages(run_dir)
        if not stages:
            raise ConfigError(
                f"{run_dir}: neither a training run (no metrics.jsonl) nor a pipeline directory "
                "(no stage.json in its subdirectories)"
            )
        print(summary_table(stages))  # a pipeline: its stages, then each RL stage's curves
        runs = [run_dir / r["stage"] for r in stages if r["kind"] == "grpo"]
    for run in runs:
        print(summarize(run))
        if args.samples:
            print(sample_lines(run, args.samples))
        out = plot(run) if (run / "metrics.jsonl").exists() else None
        if out:
            print(f"plot: {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ponder", description=__doc__, formatter_class=argparse.RawTextHelpFormatter, allow_abbrev=False
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="run GRPO from a recipe (default: r1_zero)", allow_abbrev=False)
    train.add_argument("recipe", nargs="?", help="recipe file or name under recipes/")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    train.add_argument(
        "--from",
        dest="start_from",
        metavar="STAGE",
        help="pipeline recipes: run STAGE and the stages after it again",
    )
    train.set_defaults(func=cmd_train)
    distill = sub.add_parser(
        "distill",
        help="SFT a small student on a teacher's verified samples (recipes/distill.toml)",
        allow_abbrev=False,
    )
    from ponder.distill import add_arguments as add_distill_arguments

    add_distill_arguments(distill)
    distill.set_defaults(func=cmd_distill)
    report = sub.add_parser("report", help="summarise and plot a run")
    report.add_argument("run_dir")
    report.add_argument(
        "--samples", type=int, default=0, metavar="N", help="print N responses of the first and last step"
    )
    report.set_defaults(func=cmd_report)
    bench = sub.add_parser("bench", help="benchmarks (rollout: the engine against transformers generate)")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    rollout = bench_sub.add_parser(
        "rollout", help="generation throughput, % of the bandwidth floor, prefill sharing", allow_abbrev=False
    )
    from ponder.bench.rollout import add_arguments

    add_arguments(rollout)
    rollout.set_defaults(func=cmd_bench_rollout)
    evaluate = sub.add_parser(
        "eval", help="models on a benchmark file: pass@1, cons@k, pass@k (R1's protocol)", allow_abbrev=False
    )
    from ponder.evaluate.benchmark import add_arguments as add_eval_arguments

    add_eval_arguments(evaluate)
    evaluate.set_defaults(func=cmd_eval)
    serve = sub.add_parser("serve", help="OpenAI-compatible HTTP API (chat, completions, streaming)")
    from ponder.serve import add_arguments as add_serve_arguments

    add_serve_arguments(serve)
    serve.set_defaults(func=cmd_serve)
    chat = sub.add_parser("chat", help="chat with a model in the terminal")
    from ponder.chat import add_arguments as add_chat_arguments

    add_chat_arguments(chat)
    chat.set_defaults(func=cmd_chat)
    return parser


def cmd_bench_rollout(args: argparse.Namespace, overrides: list[str]) -> int:
    if overrides:
        raise ConfigError(f"unexpected arguments: {' '.join(overrides)}")
    from ponder.bench.rollout import run

    return run(args)


def cmd_eval(args: argparse.Namespace, overrides: list[str]) -> int:
    if overrides:
        raise ConfigError(f"unexpected arguments: {' '.join(overrides)}")
    from ponder.evaluate.benchmark import run

    return run(args)


def cmd_serve(args: argparse.Namespace, overrides: list[str]) -> int:
    if overrides:
        raise ConfigError(f"unexpected arguments: {' '.join(overrides)}")
    from ponder.serve import run

    return run(args)


def cmd_chat(args: argparse.Namespace, overrides: list[str]) -> int:
    if overrides:
        raise ConfigError(f"unexpected arguments: {' '.join(overrides)}")
    from ponder.chat import run

    return run(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ponder` console script."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    try:
        return args.func(args, rest)
    except ConfigError as err:
        print(f"ponder: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
