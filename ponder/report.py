"""Learning summaries of a run directory: did accuracy rise beyond its noise? Plus curves as a PNG,
responses from the start and the end of training side by side (how the reasoning changed), and the
warning a running GRPO prints when its responses collapse onto one string (`collapse_warning`).

ponder report RUN_DIR [--samples N]
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from ponder.train.metrics import mean_and_se, read_jsonl

# per-step metrics summarised (first vs last steps) and plotted, in this order: RL runs, then SFT runs
CURVES = ("correct", "accuracy", "format", "reward", "response_len_mean", "reflection_frac", "distinct_frac")
SFT_CURVES = ("loss",)


def _curves(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """The curves this run logs: an RL run's, else an SFT run's training loss."""
    rl = tuple(k for k in CURVES if k in rows[0])
    return rl or tuple(k for k in SFT_CURVES if k in rows[0])


def learning_summary(
    rows: list[dict[str, Any]], key: str = "accuracy", frac: float = 0.2
) -> dict[str, float]:
    """Mean ± standard error of `key` over the first and last `frac` of steps, and the z-score of the gain.

    Each step's value is a mean over its B×G samples; the standard error is taken over steps, so it
    includes prompt-to-prompt variation.
    """
    k = max(1, int(round(len(rows) * frac)))
    first, fse = mean_and_se([r[key] for r in rows[:k]])
    last, lse = mean_and_se([r[key] for r in rows[-k:]])
    noise = math.sqrt(fse**2 + lse**2) if not (math.isnan(fse) or math.isnan(lse)) else float("nan")
    z = (last - first) / noise if noise and not math.isnan(noise) else float("nan")
    return {"first": first, "first_se": fse, "last": last, "last_se": lse, "steps_each": k, "z": z}


def pipeline_stages(root: Path) -> list[dict[str, Any]]:
    """The stage records of a pipeline directory: `pipeline.json` when the pipeline finished, else the
    `stage.json` of every finished stage (a pipeline still running, or stopped), oldest first."""
    done = root / "pipeline.json"
    if done.exists():
        return json.loads(done.read_text())
    found = sorted(root.glob("*/stage.json"), key=lambda p: p.stat().st_mtime)
    records = [(p.parent.name, json.loads(p.read_text())) for p in found]
    return [r for name, r in records if isinstance(r, dict) and r.get("stage") == name]


def summarize(run_dir: Path) -> str:
    """A few lines a person reads at the end of a run."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return f"{run_dir}: no metrics.jsonl yet"
    rows = read_jsonl(path)
    if not rows:
        return f"{run_dir}: no steps logged"
    seconds = sum(r.get("time_step", r.get("time", 0.0)) for r in rows)
    lines = [f"{run_dir}: {len(rows)} steps, {seconds:.0f} s"]
    for key in _curves(rows):
        s = learning_summary(rows, key)
        lines.append(
            f"  {key:9s} first {s['steps_each']} steps {s['first']:.3f} ± {s['first_se']:.3f}   "
            f"last {s['steps_each']} steps {s['last']:.3f} ± {s['last_se']:.3f}   gain/noise z = {s['z']:.1f}"
        )
    evals = Path(run_dir) / "eval.jsonl"
    if evals.exists() and evals.stat().st_size:
        ev = read_jsonl(evals)
        a, b = ev[0], ev[-1]
        rl = "n_items" in a
        size = f"{a['n_items']} items x {a['samples']}, " if rl else f"{a.get('examples', '?')} rows, "
        lines.append(
            f"  held-out ({size}steps {a['step']} -> {b['step']}): "
            + ", ".join(
                f"{k} {a[k]:.3f} -> {b[k]:.3f}"
                for k in ("correct", "accuracy", "format", "response_len_mean", "reflection", "loss")
                if k in a and k in b
            )
        )
    if "time_gen" not in rows[0]:  # an SFT run: no generation
        return "\n".join(lines)
    gen = sum(r["time_gen"] for r in rows)
    rew = sum(r["time_reward"] for r in rows)
    trn = sum(r["time_train"] for r in rows)
    total = max(gen + rew + trn, 1e-9)
    lines.append(
        f"  time split: generation {gen / total:.0%}, reward {rew / total:.0%}, training {trn / total:.0%}"
    )
    return "\n".join(lines)


def sample_lines(run_dir: Path, n: int, width: int = 600) -> str:
    """Up to `n` logged responses (samples.jsonl) of the first logged step and of the last one, each with
    its prompt, reference answer and reward scores; a response longer than `width` characters is cut."""
    path = Path(run_dir) / "samples.jsonl"
    rows = read_jsonl(path) if path.exists() else []
    if not rows or n <= 0:
        return f"{run_dir}: no samples.jsonl rows" if n > 0 else ""
    first, last = rows[0]["step"], rows[-1]["step"]
    lines = []
    for step in dict.fromkeys((first, last)):
        for r in [r for r in rows if r["step"] == step][:n]:
            scores = ", ".join(f"{k} {v:.2f}" for k, v in r.get("scores", {}).items())
            text = r["response"] if len(r["response"]) <= width else r["response"][:width] + " [...]"
            lines += [f"--- step {step}: {r['prompt']!r} (answer {r['answer']}; {scores})", text]
    return "\n".join(lines)


def plot(run_dir: Path) -> Path | None:
    """Write `curves.png` (reward, accuracy, format, length, reflection per step; an SFT run: its loss);
    None without matplotlib or steps."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = read_jsonl(Path(run_dir) / "metrics.jsonl")
    if not rows:
        return None
    steps = [r["step"] for r in rows]
    curves = _curves(rows)
    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3), squeeze=False)
    for ax, key in zip(axes[0], curves, strict=True):
        ax.plot(steps, [r.get(key, float("nan")) for r in rows])
        ax.set_title(key)
        ax.set_xlabel("step")
    fig.tight_layout()
    out = Path(run_dir) / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


COLLAPSE_DISTINCT = 0.1  # below this share of distinct responses across prompts, `collapse_warning` speaks


def collapse_warning(row: dict[str, Any], warned: bool) -> bool:
    """Print once (to stderr) when a step's responses to different prompts collapse onto a few strings (under
    10%, or one string for every prompt of a step with at least 4): what a policy that reward-hacks a
    format reward by copying a fixed text looks like. Returns whether it has warned."""
    prompts, frac = row.get("groups_kept", 0), row.get("distinct_frac", 1.0)
    if warned or prompts < 4 or (frac >= COLLAPSE_DISTINCT and round(frac * prompts) > 1):
        return warned
    print(
        f"ponder: warning: step {row['step']}: only {row['distinct_frac']:.1%} of the responses to different "
        "prompts are distinct "
        f"(accuracy {row.get('accuracy', float('nan')):.1%}, format {row.get('format', float('nan')):.1%}): "
        "the policy may be answering every prompt with one string (reward hacking); see samples.jsonl",
        file=sys.stderr,
        flush=True,
    )
    return True
