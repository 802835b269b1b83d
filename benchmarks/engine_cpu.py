"""CPU check of the paged-KV engine against transformers generate on SmolLM2-135M-Instruct (batch 64).

    python benchmarks/engine_cpu.py

Prints greedy identity on 8 prompts and tok/s of both backends, alternating, two rounds.
"""

import random
import time

import torch

from ponder.config import SamplingConfig
from ponder.model import load_model
from ponder.rollout import HFGenerator
from ponder.rollout.engine import Engine

torch.set_num_threads(2)
m, tok = load_model("smollm2-135m")
rng = random.Random(0)
prompts = [[rng.randrange(1000, 40000) for _ in range(rng.randint(30, 60))] for _ in range(16)]
batch = [p for p in prompts for _ in range(4)]
s = SamplingConfig(temperature=1.0, max_new_tokens=64)
eng = Engine(m, tok, num_blocks=1024, block_size=16, max_batch=64)
hf = HFGenerator(m, tok, max_batch=64)
# greedy identity on the real model
g = SamplingConfig(temperature=0.0, max_new_tokens=32)
a = eng.generate(prompts[:8], g, 0)
b = hf.generate(prompts[:8], g, 0)
print("greedy identical:", all(x.token_ids == y.token_ids for x, y in zip(a, b, strict=True)))
for name, gen in [("ponder", eng), ("hf", hf), ("ponder", eng), ("hf", hf)]:
    t0 = time.perf_counter()
    out = gen.generate(batch, s, 1)
    dt = time.perf_counter() - t0
    n = sum(len(c.token_ids) for c in out)
    print(f"{name:7s} {n} tokens {dt:.1f}s {n / dt:.0f} tok/s", getattr(gen, "stats", ""), flush=True)
