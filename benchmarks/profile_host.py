"""Where the host's time goes in a decode-heavy engine run (cProfile), Qwen2.5-0.5B shape, 256 x 400 tokens.

python benchmarks/profile_host.py
"""

import cProfile
import pstats
import random
import time

import torch

from ponder.bench.rollout import _engine, _NoTokenizer, random_model
from ponder.config import SamplingConfig

model = random_model("qwen2.5-0.5b", "cuda", torch.bfloat16)
eng = _engine(model, _NoTokenizer(), 256, 40.0, 16)
rng = random.Random(0)
prompts = [[rng.randrange(10000) for _ in range(500)] for _ in range(256)]
eng.generate([[1] * 300] * 4, SamplingConfig(max_new_tokens=8), seed=0)
s = SamplingConfig(temperature=0.6, max_new_tokens=400)
torch.cuda.synchronize()
t0 = time.perf_counter()
eng.generate(prompts, s, seed=0)
torch.cuda.synchronize()
print(f"unprofiled: {time.perf_counter() - t0:.2f}s, {eng.stats.decode_steps} decode steps")
prof = cProfile.Profile()
prof.enable()
eng.generate([[p + 1 for p in q] for q in prompts], s, seed=1)
torch.cuda.synchronize()
prof.disable()
pstats.Stats(prof).sort_stats("tottime").print_stats(30)
