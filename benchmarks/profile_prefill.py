"""Prefill time and its CUDA / CPU profile, Qwen2.5-0.5B shape, 256 prompts of 500 tokens.

python benchmarks/profile_prefill.py
"""

import time

import torch
from torch.profiler import ProfilerActivity, profile

from ponder.bench.rollout import _engine, _NoTokenizer, random_model
from ponder.config import SamplingConfig

model = random_model("qwen2.5-0.5b", "cuda", torch.bfloat16)
eng = _engine(model, _NoTokenizer(), 256, 40.0, 16)
g = torch.Generator().manual_seed(0)
warm = [torch.randint(10000, 20000, (500,), generator=g).tolist() for _ in range(32)]
eng.generate(warm, SamplingConfig(max_new_tokens=2), seed=0)
prompts = [torch.randint(0, 10000, (500,), generator=g).tolist() for _ in range(256)]
torch.cuda.synchronize()
t0 = time.perf_counter()
eng.generate(prompts, SamplingConfig(max_new_tokens=1), seed=0)
torch.cuda.synchronize()
print(f"prefill 256x500 = 128000 tokens: {time.perf_counter() - t0:.3f}s", flush=True)
prompts = [torch.randint(20000, 30000, (500,), generator=g).tolist() for _ in range(256)]
with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
    eng.generate(prompts, SamplingConfig(max_new_tokens=1), seed=0)
    torch.cuda.synchronize()
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=60))
print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=12, max_name_column_width=60))
