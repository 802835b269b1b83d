r"""The learning race of issue 7: ponder's GRPO and TRL's GRPOTrainer on the same task, side by side.

    python benchmarks/trl_vs_ponder.py [--arm both|ponder|trl] [--out DIR] [--time-budget S] \
        [--section.key=value ...]                           # recipe overrides, e.g. --optim.lr=2e-5
    python benchmarks/trl_vs_ponder.py --steps 2 --prompts 2 --group 2 --max-new-tokens 16 --eval-size 4 \
        --device cpu                                        # CPU smoke check of both arms (minutes)

The setup (../shared/GPU.md, "Peer learning baseline"): SmolLM2-135M-Instruct (the GGUF rebuilt as a plain
fp32 model), 2-digit addition, the R1-Zero system prompt through the chat template, 32 prompts x 8 samples
per step, <= 128 new tokens, greedy accuracy on 256 held-out problems. `recipes/addition_race.toml` holds it
and is the ponder arm itself (`ponder train addition_race` reruns that arm alone); `--section.key=value`
arguments override the recipe. What the two arms share, taken from the recipe:
  - the model, and the prompt text: the recipe's prompt rendered by ponder's template, prefill included; TRL
    gets it as a plain-text prompt (the script checks that its tokenizer call adds no special tokens);
  - the training prompts in the same order (task stream `run.seed`; TRL's dataset is not shuffled), prompts
    per step, samples per prompt, max new tokens, micro-batch size (TRL: per-device batch = micro-batch,
    gradient accumulation = the rest of the step, so one optimizer step per 32 x 8 samples);
  - the evaluation, the same function for both: ponder's `evaluate_items` on the recipe's held-out items
    (`eval.size`, `eval.seed`), greedy, run on ponder's engine over the arm's live weights in the recipe's
    autocast dtype. Accuracy counts only the answer tag (R1's rule); last-number accuracy and the strict
    think-then-answer format rate are reported beside it.
What stays each arm's own: rewards, sampling temperature, loss. TRL keeps the measured setup: partial-credit
rewards written below (1 for the exact tagged answer, else 0.5 for the right last number; 0.1 per tag used
once), lr 1e-5 constant, beta 0, temperature 1.0, bf16 on a GPU, and TRL's defaults otherwise (DAPO loss,
group-scaled rewards, eps 0.2, one update per generation) except gradient checkpointing, off as in ponder.

Clock: each arm's wall time starts when its training starts (after its model load and the step-0 evaluation)
and stops while it is evaluated, so evaluation time is excluded from both arms' `train_s` (`total_s` keeps
it). Ponder's one-time engine warm-up (Triton compile, CUDA-graph capture) happens in its step-0 evaluation
and so is excluded too; TRL's generate() needs none. Evaluations run every `eval.every` steps
(`--eval-every`), every `--eval-every-s` seconds of training if set, and after the last step; `--time-budget`
stops either arm after that many training seconds (then evaluates once more).

Writes into --out (default runs/race-<time>/): race.jsonl (one row per evaluation: arm, step, train_s,
total_s, accuracy, last_number, correct, format, tokens, three example responses), race.png (accuracy and
format vs training seconds), ponder_metrics.jsonl and trl_metrics.jsonl (per-step logs), ponder_config.toml.
Rows of an arm being run replace that arm's earlier rows in race.jsonl, and the closing table and plot cover
every row there, so two calls (`--arm ponder`, then `--arm trl`) with one --out give one comparison.

On the GPU machine (no network; ../shared/GPU.md). Here, once: the GGUF's two parts in .stage/1 and .stage/2
("Moving a file larger than 64 MiB"), gguf and langid wheels in .whl/ (benchmarks/gpu_setup.sh installs them),
and TRL's wheels in .whl/trl/ (trl 1.16.0 needs transformers >= 4.56.2; the GPU image lacks only these four):
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
      -d .whl/trl trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
GPU call 1, carry [".stage/1"]:
    mkdir -p $HOME/stash && cp .stage/1/* $HOME/stash/
GPU call 2 at once (the machine must still be warm), carry [".stage/2", ".whl"], timeout_s 600:
    source benchmarks/gpu_setup.sh && python3 -m pip install -q --no-index --no-deps --no-compile \
      --no-cache-dir --upgrade --target /tmp/site .whl/trl/*.whl && export HF_HUB_OFFLINE=1 \
      PYTHONUNBUFFERED=1 && python3 -P benchmarks/trl_vs_ponder.py --arm both --time-budget 280 \
      --out $OUT 2>&1 | tee $OUT/log.txt
Rows reach race.jsonl as they are measured (ponder's arm runs first), so a call stopped at its limit still
returns what was measured. Should one call not hold both arms, run them in two calls on the warm machine with
`--out $HOME/race` (`--arm ponder`, then `--arm trl`), ending the second with `cp $HOME/race/* $OUT/`.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from ponder.config import Config, dump_toml, load_config
from ponder.data.tasks import Item, build_task, task_from_config
from ponder.data.templates import render_prompt
from ponder.evaluate import evaluate_items
from ponder.model import AUTOCAST_DTYPES, load_model, pick_device
from ponder.rewards import get_checker
from ponder.rewards.extract import TAGS, last_number, strip_tags
from ponder.rollout.factory import make_generator
from ponder.stages.grpo import GRPOTrainer
from ponder.train.metrics import JsonlWriter, read_jsonl

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "addition_race.toml"
# TRL's arm: the measured peer setup (../shared/GPU.md); the rest of TRL's GRPOConfig stays at its defaults.
TRL_LR, TRL_BETA, TRL_TEMPERATURE = 1e-5, 0.0, 1.0
TARGET = 0.88  # issue 7: greedy answer-tag accuracy to reach


# ------------------------------------------------------------------------------------ shared: the race


class Clock:
    """Training wall time: runs between `resume()` and `pause()`, so evaluations are left out."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.banked, self.since = device, 0.0, None

    def _sync(self) -> None:
        if self.device.type == "cuda":  # queued GPU work belongs to the interval it was launched in
            torch.cuda.synchronize()

    def resume(self) -> None:
        self._sync()
        self.since = time.perf_counter()

    def pause(self) -> None:
        self._sync()
        if self.since is not None:
            self.banked += time.perf_counter() - self.since
        self.since = None

    def seconds(self) -> float:
        running = time.perf_counter() - self.since if self.since is not None else 0.0
        return self.banked + running


class Race:
    """One arm's clock, evaluation schedule and result rows (appended to race.jsonl as they come)."""

    def __init__(self, arm: str, cfg: Config, items: list[Item], args: argparse.Namespace, device) -> None:
        self.arm, self.cfg, self.items = arm, cfg, items
        self.every, self.every_s, self.budget = cfg.eval.every, args.eval_every_s, args.time_budget
        self.next_mark = self.every_s
        self.clock = Clock(device)
        self.created = time.perf_counter()
        self.started: float | None = None
        self.rows: list[dict[str, Any]] = []
        self.path = Path(args.out) / "race.jsonl"
        kept = [r for r in read_jsonl(self.path) if r["arm"] != arm] if self.path.exists() else []
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))  # this arm's old rows go

    def start(self) -> None:
        self.started = time.perf_counter()
        self.clock.resume()

    def due(self, step: int) -> bool:
        """Whether to evaluate after `step` (every `eval.every` steps or `--eval-every-s` seconds)."""
        by_time = bool(self.every_s) and self.clock.seconds() >= self.next_mark
        while self.every_s and self.next_mark <= self.clock.seconds():
            self.next_mark += self.every_s
        return bool(self.every and step % self.every == 0) or by_time

    def out_of_time(self) -> bool:
        return bool(self.budget) and self.clock.seconds() >= self.budget

    def evaluate(self, step: int, generator, tokenizer) -> dict[str, Any]:
        """Evaluate the arm's current policy with the clock stopped; log and print one row."""
        self.clock.pause()
        t0 = time.perf_counter()
        result = evaluate(generator, tokenizer, self.items, self.cfg)
        now = time.perf_counter()
        row = {
            "arm": self.arm,
            "step": step,
            "train_s": round(self.clock.seconds(), 2),
            "total_s": round(now - self.started, 2) if self.started else 0.0,
            "eval_s": round(now - t0, 2),
            **result,
        }
        if self.started is None:
            row["setup_s"] = round(t0 - self.created, 2)  # model load and trainer construction
        self.rows.append(row)
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(_format_row(row), flush=True)
        if self.started is not None:
            self.clock.resume()
        return row


def evaluate(generator, tokenizer, items: list[Item], cfg: Config) -> dict[str, Any]:
    """Greedy held-out evaluation, the same for both arms: what `GRPOTrainer` logs as eval.jsonl (ponder's
    `evaluate_items` with the recipe's eval settings) plus last-number accuracy over the same responses."""
    ev = cfg.eval
    sampling = replace(
        cfg.sampling,
        temperature=ev.temperature,
        max_new_tokens=ev.max_new_tokens or cfg.sampling.max_new_tokens,
    )
    result = evaluate_items(generator, tokenizer, items, cfg.prompt, sampling, ev.samples, ev.seed)
    rows, samples = result["rows"], result["samples"]
    last = [_right(last_number(strip_tags(r["response"])), items[i // samples]) for i, r in enumerate(rows)]
    return {
        "accuracy": result["accuracy"],  # the single answer block after the reasoning is right
        "last_number": sum(last) / max(1, len(last)),  # the response's last number is right
        "correct": result["correct"],  # the answer block, else (no answer tag) the last number
        "format": result["format"],  # strict <think>…</think><answer>…</answer>
        "tokens": result["response_len_mean"],
        "examples": [{"answer": r["answer"], "response": r["response"]} for r in rows[:3]],
    }


def _right(answer: str | None, item: Item) -> bool:
    return answer is not None and get_checker(item.ref.checker)(answer, item.ref)


def heldout_items(cfg: Config) -> list[Item]:
    """The recipe's evaluation problems, as `GRPOTrainer` draws them (`eval.task`, else the training task)."""
    ev = cfg.eval
    task = build_task(ev.task, **ev.args) if ev.task else build_task(cfg.task.name, **cfg.task.args)
    stream = task.items(ev.seed)
    return [next(stream) for _ in range(ev.size)]


def training_items(cfg: Config) -> list[Item]:
    """The prompts of `grpo.steps` steps in the order ponder's trainer draws them (stream `run.seed`)."""
    stream = task_from_config(cfg.task).items(cfg.run.seed)
    return [next(stream) for _ in range(cfg.grpo.steps * cfg.grpo.prompts_per_step)]


def eval_generator(model, tokenizer, cfg: Config, items: list[Item]):
    """Ponder's engine over `model`'s live weights, sized for one evaluation of `items`."""
    prompts = [render_prompt(it.prompt, tokenizer, cfg.prompt) for it in items]
    longest = max(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in prompts)
    new = cfg.eval.max_new_tokens or cfg.sampling.max_new_tokens
    autocast = AUTOCAST_DTYPES[cfg.model.autocast]
    return make_generator(model, tokenizer, cfg.rollout, autocast, len(items), longest + new)


# ------------------------------------------------------------------------------------ ponder's arm


def run_ponder(cfg: Config, items: list[Item], args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    """ponder's GRPOTrainer on the recipe, stepped here (not `train()`) so the clock stops at evaluations."""
    race = Race("ponder", cfg, items, args, pick_device(cfg.model.device))
    trainer = GRPOTrainer(cfg, out)  # writes nothing by itself: neither train() nor save() is called
    assert trainer.eval_items == items, "the trainer's held-out problems differ from the race's"
    (out / "ponder_config.toml").write_text(dump_toml(cfg))
    (out / "ponder_metrics.jsonl").unlink(missing_ok=True)
    metrics = JsonlWriter(out / "ponder_metrics.jsonl")
    race.evaluate(0, trainer.generator, trainer.tokenizer)
    race.start()
    try:
        while trainer.step < cfg.grpo.steps:
            row, _ = trainer.train_step()
            metrics.write(row)
            last = trainer.step == cfg.grpo.steps or race.out_of_time()
            if last or race.due(trainer.step):
                race.evaluate(trainer.step, trainer.generator, trainer.tokenizer)
            if last:
                break
    finally:
        metrics.close()
    return race.rows


# ------------------------------------------------------------------------------------ TRL's arm


def trl_rewards(prefill: str) -> list:
    """TRL's partial-credit rewards (the measured peer setup), judged on prefill + completion, as ponder's."""

    def answer_credit(completions: list[str], answer: list[str], **_: Any) -> list[float]:
        """1 for the exact answer inside <answer></answer>, else 0.5 if the last number is right, else 0."""
        scores = []
        for completion, gold in zip(completions, answer, strict=True):
            text = prefill + completion
            tagged = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
            numbers = re.findall(r"-?\d+", text)
            if tagged and tagged.group(1).strip() == gold:
                scores.append(1.0)
            else:
                scores.append(0.5 if numbers and numbers[-1] == gold else 0.0)
        return scores

    def tag_credit(completions: list[str], **_: Any) -> list[float]:
        """0.1 for each of the four tags used exactly once."""
        return [0.1 * sum((prefill + c).count(tag) == 1 for tag in TAGS) for c in completions]

    return [answer_credit, tag_credit]


class RaceCallback(TrainerCallback):
    """Evaluates TRL's policy at step 0 and on the race's schedule; stops training at the time budget."""

    def __init__(self, race: Race, model: torch.nn.Module, generator, tokenizer, log: JsonlWriter) -> None:
        self.race, self.model, self.generator, self.tokenizer, self.log = (
            race,
            model,
            generator,
            tokenizer,
            log,
        )

    def _evaluate(self, step: int, policy: torch.nn.Module) -> None:
        if policy is not self.model:  # the engine reads `self.model`'s weights: they must be the trained ones
            raise RuntimeError("TRL trains another model object than the one the race evaluates")
        self.race.evaluate(step, self.generator, self.tokenizer)

    def on_train_begin(self, args, state, control, **kwargs):
        self._evaluate(0, kwargs["model"])
        self.race.start()

    def on_step_end(self, args, state, control, **kwargs):
        last = state.global_step >= state.max_steps or self.race.out_of_time()
        if last or self.race.due(state.global_step):
            self._evaluate(state.global_step, kwargs["model"])
        if last:
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.log.write({"step": state.global_step, **(logs or {})})


def trl_config(cfg: Config, device: torch.device, output_dir: str):
    """TRL's GRPOConfig: the shared sizes from the recipe, TRL's own settings from the measured setup."""
    from trl import GRPOConfig

    g = cfg.grpo
    per_step = g.prompts_per_step * g.group_size
    micro = min(g.micro_batch_size, per_step)
    if per_step % micro:
        raise SystemExit(f"grpo.micro_batch_size = {micro} must divide the {per_step} samples of a step")
    return GRPOConfig(
        output_dir=output_dir,
        max_steps=g.steps,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=per_step // micro,  # one optimizer step per generation of a step
        num_generations=g.group_size,
        max_completion_length=cfg.sampling.max_new_tokens,
        temperature=TRL_TEMPERATURE,
        learning_rate=TRL_LR,
        lr_scheduler_type="constant",
        beta=TRL_BETA,
        shuffle_dataset=False,  # the same prompt order as ponder's stream
        gradient_checkpointing=False,  # TRL's default is on; a 135M model needs no recomputation
        bf16=device.type == "cuda",
        use_cpu=device.type == "cpu",
        seed=cfg.run.seed,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )


def run_trl(cfg: Config, items: list[Item], args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    """trl.GRPOTrainer on the same prompts, with a callback that evaluates and keeps the clock."""
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import GRPOTrainer as TRLTrainer

    device = pick_device(cfg.model.device)
    race = Race("trl", cfg, items, args, device)
    model, tokenizer = load_model(cfg.model.name, dtype=cfg.model.dtype, device=str(device))
    model.train()
    # Built before TRL's Trainer aligns the model's special tokens with the tokenizer's: the evaluation then
    # stops on exactly the tokens it stops on in ponder's arm.
    generator = eval_generator(model, tokenizer, cfg, items)
    rows = [
        {"prompt": render_prompt(item.prompt, tokenizer, cfg.prompt), "answer": item.ref.answer}
        for item in training_items(cfg)
    ]
    text = rows[0]["prompt"]  # TRL tokenizes plain-text prompts with the tokenizer's default special tokens
    if tokenizer(text)["input_ids"] != tokenizer(text, add_special_tokens=False)["input_ids"]:
        raise SystemExit("this tokenizer adds special tokens to plain text: TRL's prompts would differ")
    scratch = tempfile.mkdtemp(prefix="trl-race-")  # TRL wants an output_dir; nothing is saved there
    (out / "trl_metrics.jsonl").unlink(missing_ok=True)
    log = JsonlWriter(out / "trl_metrics.jsonl")
    trainer = TRLTrainer(
        model=model,
        reward_funcs=trl_rewards(cfg.prompt.prefill),
        args=trl_config(cfg, device, scratch),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[RaceCallback(race, model, generator, tokenizer, log)],
    )
    trainer.remove_callback(PrinterCallback)  # the per-step logs go to trl_metrics.jsonl
    try:
        trainer.train()
    finally:
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return race.rows


# ------------------------------------------------------------------------------------ report


def _format_row(r: dict[str, Any]) -> str:
    return (
        f"{r['arm']:7s} {r['step']:5d} {r['train_s']:8.1f} {100 * r['accuracy']:7.1f}% "
        f"{100 * r['last_number']:7.1f}% {100 * r['format']:7.1f}% {r['tokens']:7.1f}"
    )


HEADER = "arm      step  train_s acc(tag) last-num   format  tokens"


def report(rows: list[dict[str, Any]], out: Path, target: float) -> None:
    """The table of every evaluation, time to `target` accuracy per arm, and race.png."""
    print("\n" + HEADER)
    for r in rows:
        print(_format_row(r))
    print(f"\ngreedy answer-tag accuracy >= {target:.0%} (training seconds, evaluation excluded):")
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]
        hit = next((r for r in mine if r["accuracy"] >= target), None)
        end = mine[-1]
        reached = f"step {hit['step']}, {hit['train_s']:.1f} s" if hit else "not reached"
        print(
            f"  {arm:7s} {reached}; at the end (step {end['step']}, {end['train_s']:.1f} s): accuracy "
            f"{end['accuracy']:.1%}, last number {end['last_number']:.1%}, format {end['format']:.1%}"
        )
    plot(rows, out / "race.png", target)


def plot(rows: list[dict[str, Any]], path: Path, target: float) -> None:
    """Accuracy (answer tag solid, last number dashed) and format rate against training seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    colours = {"ponder": "tab:blue", "trl": "tab:orange"}
    for arm in dict.fromkeys(r["arm"] for r in rows):
        colour = colours.get(arm, "tab:green")
        mine = [r for r in rows if r["arm"] == arm]
        t = [r["train_s"] for r in mine]
        left.plot(t, [r["accuracy"] for r in mine], "-o", color=colour, label=f"{arm}: answer tag")
        left.plot(t, [r["last_number"] for r in mine], "--", color=colour, label=f"{arm}: last number")
        right.plot(t, [r["format"] for r in mine], "-o", color=colour, label=arm)
    left.axhline(target, color="grey", lw=0.8, ls=":")
    left.set(xlabel="training wall time, s (evaluation excluded)", ylabel="greedy accuracy", ylim=(0, 1))
    right.set(xlabel="training wall time, s (evaluation excluded)", ylabel="strict format rate", ylim=(0, 1))
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------ main


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--arm",
        choices=("both", "ponder", "trl", "report"),
        default="both",
        help="report: no training, only the table and plot of the rows already in --out",
    )
    p.add_argument("--recipe", default=str(RECIPE))
    p.add_argument("--out", default="", help="output directory (default runs/race-<time>)")
    p.add_argument("--steps", type=int, help="training steps of each arm (grpo.steps)")
    p.add_argument("--prompts", type=int, help="prompts per step (grpo.prompts_per_step)")
    p.add_argument("--group", type=int, help="samples per prompt (grpo.group_size)")
    p.add_argument("--max-new-tokens", type=int, help="sampling.max_new_tokens")
    p.add_argument("--eval-size", type=int, help="held-out problems (eval.size)")
    p.add_argument("--eval-every", type=int, help="evaluate every N steps (eval.every)")
    p.add_argument("--eval-every-s", type=float, default=0.0, help="also every S training seconds")
    p.add_argument("--time-budget", type=float, default=0.0, help="stop an arm after S training seconds")
    p.add_argument("--device", help="model.device: auto, cpu, cuda")
    p.add_argument("--target", type=float, default=TARGET, help="accuracy whose time is reported")
    args, rest = p.parse_known_args(argv)
    return args, rest


def race_config(args: argparse.Namespace, overrides: list[str]) -> Config:
    """The recipe with the command line's overrides (the named flags win over `--section.key=value`)."""
    named = {
        "grpo.steps": args.steps,
        "grpo.prompts_per_step": args.prompts,
        "grpo.group_size": args.group,
        "sampling.max_new_tokens": args.max_new_tokens,
        "eval.size": args.eval_size,
        "eval.every": args.eval_every,
        "model.device": args.device,
    }
    flags = [f"--{key}={value}" for key, value in named.items() if value is not None]
    cfg = load_config(args.recipe, [*overrides, *flags, "--run.progress=false"])
    if cfg.eval.size <= 0 or cfg.eval.temperature != 0:
        raise SystemExit("the race needs greedy held-out evaluation: eval.size > 0 and eval.temperature = 0")
    return cfg


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    cfg = race_config(args, overrides)
    out = Path(args.out or f"runs/race-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    args.out = str(out)
    items = heldout_items(cfg)
    if args.arm == "report":
        if not (out / "race.jsonl").is_file():
            raise SystemExit(f"{out / 'race.jsonl'}: no rows to report")
        report(read_jsonl(out / "race.jsonl"), out, args.target)
        return 0
    seen = {item.prompt for item in training_items(cfg)}
    g = cfg.grpo
    print(
        f"race: {args.arm}, {g.steps} steps x {g.prompts_per_step} prompts x {g.group_size} samples, "
        f"<= {cfg.sampling.max_new_tokens} tokens, {len(items)} held-out problems "
        f"({sum(it.prompt in seen for it in items)} of them also among the training prompts) -> {out}",
        flush=True,
    )
    print(HEADER, flush=True)
    arms = ("ponder", "trl") if args.arm == "both" else (args.arm,)
    for arm in arms:
        (run_ponder if arm == "ponder" else run_trl)(cfg, items, args, out)
        gc.collect()  # the arm's model, optimizer and KV cache go before the next arm loads
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    report(read_jsonl(out / "race.jsonl"), out, args.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
