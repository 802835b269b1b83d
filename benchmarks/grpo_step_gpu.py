"""A GRPO step at the issue's size on one GPU, with transformers generate() and with ponder's engine.

    python benchmarks/grpo_step_gpu.py [OUT_DIR]

Random weights at the Qwen2.5-0.5B shape (bf16, vocab 151,936), ponder's tiny character tokenizer (prompts
are short; completions are random tokens), 16 prompts x 16 samples = 256 completions of exactly 512 tokens
(min = max new tokens), beta = 0 (no reference model), micro-batches of 16 sequences. Runs `ponder train`
for 3 steps per backend and prints time_gen / time_train per step from each run's metrics.jsonl.
"""

import json
import sys
from pathlib import Path

import torch

import ponder.stages.grpo as grpo
from ponder import cli
from ponder.bench.rollout import random_model
from ponder.model import load_model


def _load(name, dtype=None, device=None):
    _, tok = load_model("tiny")
    return random_model("qwen2.5-0.5b", "cuda", torch.bfloat16).train(), tok


grpo.load_model = _load  # the trainer builds its policy through this name
out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/grpo_step")
common = [
    "smoke",
    "--model.dtype=bfloat16",
    "--model.autocast=none",
    "--task.args.digits=2",
    "--sampling.temperature=1.0",
    "--sampling.max_new_tokens=512",
    "--sampling.min_new_tokens=512",
    "--grpo.steps=3",
    "--grpo.prompts_per_step=16",
    "--grpo.group_size=16",
    "--grpo.micro_batch_size=16",
    "--grpo.beta=0.0",
    "--optim.lr=1e-6",
    "--run.save_every=0",
    "--eval.every=0",
    "--rollout.max_batch=256",
    "--rollout.num_blocks=20000",
]
for backend in ("hf", "ponder"):
    run_dir = out / backend
    code = cli.main(["train", *common, f"--rollout.backend={backend}", f"--run.dir={run_dir}"])
    assert code == 0, code
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        if "time_gen" in r:
            print(
                f"{backend:7s} step {r['step']}: gen {r['time_gen']:.2f}s  train {r['time_train']:.2f}s  "
                f"step {r['time_step']:.2f}s  (gen {100 * r['time_gen'] / r['time_step']:.0f}%)",
                flush=True,
            )
