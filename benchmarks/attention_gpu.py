"""Decode attention over the paged cache: the one-pass kernel against split-K (flash-decoding), by config.

    python benchmarks/attention_gpu.py [--shape qwen2.5-0.5b|qwen3-0.6b] [--batch 256] [--ctx 100,2048]

Random K/V in a paged cache (block size 16, blocks scattered), one new token per sequence, contexts uniform
in --ctx. For each kernel and launch config: microseconds per call (one layer; CUDA events, median of 20
after warm-up), effective bandwidth (bytes of K and V read / time) against --bandwidth, and the largest
difference from the one-pass kernel's output. On a CPU (--device cpu with TRITON_INTERPRET=1 and a small
--batch/--ctx) it only checks that every config runs and agrees.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import random
import statistics
import time

import torch

from ponder.bench.rollout import peak_bandwidth
from ponder.rollout.engine import triton_kernels as tk

SHAPES = {"qwen2.5-0.5b": (14, 2, 64), "qwen3-0.6b": (16, 8, 128), "qwen2.5-1.5b": (12, 2, 128)}


def _time(fn, device: str, reps: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) * 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="qwen2.5-0.5b", choices=sorted(SHAPES))
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--ctx", default="100,2048", help="min,max context length")
    p.add_argument("--device", default="cuda")
    p.add_argument("--bandwidth", type=float, help="bytes/s (default: the GPU's datasheet figure)")
    p.add_argument("--quick", action="store_true", help="a few configs only")
    args = p.parse_args()
    if args.bandwidth is None:
        args.bandwidth = peak_bandwidth(torch.cuda.get_device_name()) if args.device == "cuda" else 1e12
    heads, kvh, d = SHAPES[args.shape]
    lo, hi = map(int, args.ctx.split(","))
    dev, bs = args.device, 16
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    rng = random.Random(0)
    ctx = [rng.randint(lo, hi) for _ in range(args.batch)]
    blocks = [-(-c // bs) for c in ctx]
    perm = list(range(sum(blocks) + 1))
    rng.shuffle(perm)
    width = max(blocks)
    tables, i = [], 0
    for n in blocks:
        tables.append(perm[i : i + n] + [0] * (width - n))
        i += n
    g = torch.Generator(device="cpu").manual_seed(0)
    k = torch.randn(len(perm), bs, kvh, d, generator=g).to(dev, dtype)
    v = torch.randn(len(perm), bs, kvh, d, generator=g).to(dev, dtype)
    q = torch.randn(args.batch, heads, d, generator=g).to(dev, dtype)
    i32 = lambda xs: torch.tensor(xs, dtype=torch.int32, device=dev)  # noqa: E731
    tables_BM, ctx_B = i32(tables), i32(ctx)
    rows = i32(list(range(args.batch)))
    block_q = tk.block_q_for(heads, kvh, decode=True)
    tile_seq, tile_off = tk.attention_tiles([1] * args.batch, block_q, dev)
    scale = d**-0.5
    kv_bytes = sum(ctx) * kvh * d * 2 * k.element_size()

    def plain(block_n=64, warps=4, stages=2):
        return tk.paged_attention(
            q, k, v, tables_BM, ctx_B, rows, torch.ones_like(rows), tile_seq, tile_off, block_q, scale,
            block_n=block_n, num_warps=warps, num_stages=stages,
        )  # fmt: skip

    def split(splits, block_n=64, warps=4, stages=2):
        return tk.paged_attention_split(
            q, k, v, tables_BM, ctx_B, scale, splits, block_n=block_n, num_warps=warps, num_stages=stages
        )

    ref = plain().float()
    mean_ctx = sum(ctx) / len(ctx)
    floor_us = 1e6 * kv_bytes / args.bandwidth
    head = f"{args.shape}: batch {args.batch}, contexts {lo}-{hi} (mean {mean_ctx:.0f})"
    print(f"{head}, K+V {kv_bytes / 1e6:.1f} MB per call, floor {floor_us:.1f} us", flush=True)
    grid_n, grid_w, grid_s = ([64], [4], [2]) if args.quick else ([32, 64, 128], [2, 4, 8], [2, 3, 4])
    configs = [("plain", 1, *c) for c in itertools.product(grid_n, grid_w, grid_s)]
    configs += [("split", s, *c) for s in (2, 4, 8, 16) for c in itertools.product(grid_n, grid_w, grid_s)]
    results = []
    for kind, splits, block_n, warps, stages in configs:
        label = f"{kind:5s} splits {splits:2d} block_n {block_n:3d} warps {warps} stages {stages}"
        if kind == "plain":
            fn = functools.partial(plain, block_n, warps, stages)
        else:
            fn = functools.partial(split, splits, block_n, warps, stages)
        try:
            diff = (fn().float() - ref).abs().max().item()
            us = _time(fn, dev)
        except Exception as e:  # a config the compiler rejects (e.g. out of shared memory)
            print(f"{label}: {type(e).__name__}")
            continue
        results.append((us, label))
        print(f"{label}: {us:8.1f} us {kv_bytes / us / 1e6:6.2f} TB/s  max diff {diff:.1e}", flush=True)
    print("fastest:", "; ".join(f"{label} {us:.1f} us" for us, label in sorted(results)[:5]))


if __name__ == "__main__":
    main()
