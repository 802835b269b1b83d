"""Is the engine's nano-protocol run bound by the GPU or by the host? Two measurements, one process.

    python benchmarks/profile_decode_gpu.py [--shape qwen2.5-0.5b] [--num-seqs 256] [--device cuda]

1. GPU busy share: the nano protocol (as `ponder bench rollout --case nano`) under torch.profiler; the
   union of the CUDA kernels' intervals over the wall time of the run, and the kernels that take the most
   GPU time. A busy share well below 100% means the GPU waits for the host between kernels.
2. Depth test: the same run with the model cut to 2 layers (same width, vocabulary and lengths). If the
   time per decode step barely drops, the fixed per-step costs (host work, launches, sampling, lm_head)
   set the pace, not the layers.
The unprofiled wall time is printed beside the profiled one (the profiler adds host overhead).
On a CPU (`--device cpu`, a tiny shape) it is a smoke test of the script only.
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from ponder.bench.rollout import _engine, _NoTokenizer, random_model, shape_config
from ponder.config import SamplingConfig


def _case(num_seqs: int, max_len: int) -> tuple[list[list[int]], list[int]]:
    rng = random.Random(0)
    prompt_lens = [rng.randint(100, max_len) for _ in range(num_seqs)]
    out_lens = [rng.randint(100, max_len) for _ in range(num_seqs)]
    return [[rng.randrange(10000) for _ in range(p)] for p in prompt_lens], out_lens


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _run(eng, prompts, out_lens, device: str, seed: int) -> float:
    sampling = SamplingConfig(temperature=0.6, max_new_tokens=max(out_lens))
    shifted = [[(t + seed) % 10000 for t in p] for p in prompts]  # new tokens: no prefix-cache hits
    _sync(device)
    t0 = time.perf_counter()
    eng.generate(shifted, sampling, seed=seed, max_new_tokens=out_lens)
    _sync(device)
    return time.perf_counter() - t0


def _busy(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end) intervals."""
    total, end = 0.0, float("-inf")
    for s, e in sorted(intervals):
        if s > end:
            total += e - s
            end = e
        elif e > end:
            total += e - end
            end = e
    return total


def _engine_for(shape: str, layers: int | None, device: str, kv_gib: float):
    if layers is None:
        model = random_model(shape, device, torch.bfloat16)
    else:
        from transformers import AutoModelForCausalLM

        cfg = shape_config(shape)
        cfg.num_hidden_layers = layers
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.bfloat16).eval()
    return _engine(model, _NoTokenizer(), 256, kv_gib, 16)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="qwen2.5-0.5b")
    p.add_argument("--num-seqs", type=int, default=256)
    p.add_argument("--max-len", type=int, default=1024)
    p.add_argument("--device", default="cuda")
    p.add_argument("--kv-gib", type=float, default=40.0)
    args = p.parse_args()
    dev = args.device
    prompts, out_lens = _case(args.num_seqs, args.max_len)
    ntok = sum(out_lens)

    eng = _engine_for(args.shape, None, dev, args.kv_gib)
    _run(eng, prompts[:8], out_lens[:8], dev, seed=1)  # compile, capture
    plain = _run(eng, prompts, out_lens, dev, seed=2)
    steps = eng.stats.decode_steps
    print(f"full depth, unprofiled: {plain:.2f} s, {ntok / plain:,.0f} tok/s, {steps} decode steps, "
          f"{1e3 * plain / steps:.2f} ms per step (prefill included)", flush=True)  # fmt: skip
    _host_split(eng)

    acts = [torch.profiler.ProfilerActivity.CPU]
    if dev == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=acts) as prof:
        profiled = _run(eng, prompts, out_lens, dev, seed=3)
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    spans = [(e.time_range.start, e.time_range.end) for e in kernels]  # microseconds
    busy = _busy(spans) / 1e6
    print(f"full depth, profiled: {profiled:.2f} s; GPU kernels busy {busy:.2f} s = "
          f"{100 * busy / profiled:.0f}% of the wall time", flush=True)  # fmt: skip
    by_name: dict[str, float] = {}
    for e in kernels:
        by_name[e.name] = by_name.get(e.name, 0.0) + (e.time_range.end - e.time_range.start) / 1e6
    for name, t in sorted(by_name.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {t:7.3f} s  {name[:110]}")
    eng = None
    if dev == "cuda":
        torch.cuda.empty_cache()

    shallow = _engine_for(args.shape, 2, dev, args.kv_gib)
    _run(shallow, prompts[:8], out_lens[:8], dev, seed=1)
    two = _run(shallow, prompts, out_lens, dev, seed=2)
    steps2 = shallow.stats.decode_steps
    per_step, full = 1e3 * two / steps2, 1e3 * plain / steps
    print(f"2 layers, unprofiled: {two:.2f} s, {ntok / two:,.0f} tok/s, {steps2} decode steps, "
          f"{per_step:.2f} ms per step (full depth {full:.2f})", flush=True)  # fmt: skip
    _host_split(shallow)


def _host_split(eng) -> None:
    """The overlapped loop's own account (`EngineStats`): host work vs waits for the device, per step."""
    st = eng.stats
    if st.decode_steps and (st.host_s or st.wait_s):
        print(f"  per decode step: host work {1e3 * st.host_s / st.decode_steps:.2f} ms, waiting for the "
              f"device {1e3 * st.wait_s / st.decode_steps:.2f} ms", flush=True)  # fmt: skip
        parts = ", ".join(f"{k} {1e3 * v / st.decode_steps:.3f}" for k, v in st.host_phases.items())
        print(f"  host work by phase, ms per step: {parts}", flush=True)


if __name__ == "__main__":
    main()
