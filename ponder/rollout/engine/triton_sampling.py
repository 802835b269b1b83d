"""Seeded sampling on the GPU path, in Triton: one fused pass over the logits for token and log-prob.

`gumbel_sample` draws one token per row as argmax(logits / T + Gumbel noise), where the noise of row b at
vocabulary entry v is a fixed hash of (the row's seed, its step, v): a sequence's samples depend on its seed
and its logits only — not on the batch it shares, its order, or preemption — and no RNG state lives on the
device. `gumbel_noise_reference` is the same noise in plain torch (the CPU reference in the tests).

It runs on CUDA; the tests run it on the CPU through Triton's interpreter (TRITON_INTERPRET=1).
"""

from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl

from ponder.rollout.engine.sampler import to_device

_M32 = 0xFFFFFFFF
_C1, _C2, _C3 = 0x7FEB352D, 0x2C1B3C6D, 0x297A2D39  # odd multipliers of the 32-bit integer hash


@triton.jit
def _hash32(x):
    x = x ^ (x >> 16)
    x = x * 0x7FEB352D
    x = x ^ (x >> 15)
    x = x * 0x2C1B3C6D
    x = x ^ (x >> 16)
    return x


@triton.jit
def _row_key(seed_lo, seed_hi, step):
    return _hash32(_hash32(_hash32(seed_lo) ^ seed_hi) + step * 0x297A2D39)


@triton.jit
def _sample_kernel(
    logits_ptr,
    keys_ptr,
    best_ptr,
    best_i_ptr,
    m_ptr,
    l_ptr,
    stride,
    stride_kb,
    stride_kc,
    V,
    CHUNK,
    NCHUNK,
    inv_t_ptr,
    NOISE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """One (row, vocabulary chunk): the chunk's best noisy score and its index, and its max / sum of
    exp(x - max) of the scaled logits x (for the row's log-sum-exp). The keys are 32-bit values held in
    int64, or their bit patterns in int32 (the CUDA-graph inputs); 1/T is read from memory, so a captured
    graph serves every temperature."""
    b = tl.program_id(0)
    c = tl.program_id(1)
    inv_t = tl.load(inv_t_ptr)
    row = keys_ptr + b * stride_kb
    seed_lo = (tl.load(row).to(tl.int64) & 0xFFFFFFFF).to(tl.uint32)
    seed_hi = (tl.load(row + stride_kc).to(tl.int64) & 0xFFFFFFFF).to(tl.uint32)
    step = (tl.load(row + 2 * stride_kc).to(tl.int64) & 0xFFFFFFFF).to(tl.uint32)
    key = _row_key(seed_lo, seed_hi, step)
    best = tl.full([BLOCK], float("-inf"), tl.float32)
    best_i = tl.zeros([BLOCK], tl.int32)
    m = tl.full([BLOCK], float("-inf"), tl.float32)
    lsum = tl.zeros([BLOCK], tl.float32)
    lo = c * CHUNK
    hi = tl.minimum(lo + CHUNK, V)
    for start in range(lo, hi, BLOCK):
        v = start + tl.arange(0, BLOCK)
        ok = v < hi
        x = tl.load(logits_ptr + b * stride + v, mask=ok, other=float("-inf")).to(tl.float32) * inv_t
        if NOISE:
            u = (_hash32(key ^ _hash32(v.to(tl.uint32))) >> 8).to(tl.float32) * (1.0 / 16777216.0)
            u = u + 0.5 / 16777216.0
            s = tl.where(ok, x - tl.log(-tl.log(u)), float("-inf"))
        else:
            s = x
        better = s > best
        best = tl.where(better, s, best)
        best_i = tl.where(better, v, best_i)
        m_new = tl.maximum(m, x)
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        lsum = lsum * tl.exp(m - m_safe) + tl.exp(x - m_safe)
        m = m_new
    top = tl.max(best, 0)
    tl.store(best_ptr + b * NCHUNK + c, top)
    tl.store(best_i_ptr + b * NCHUNK + c, tl.min(tl.where(best == top, best_i, 2147483647), 0))
    mm = tl.max(m, 0)
    mm_safe = tl.where(mm == float("-inf"), 0.0, mm)
    tl.store(m_ptr + b * NCHUNK + c, mm)
    tl.store(l_ptr + b * NCHUNK + c, tl.sum(lsum * tl.exp(m - mm_safe), 0))


def fused_sample(
    logits_BV: torch.Tensor,
    keys_B3: torch.Tensor | None,
    temperature: float | torch.Tensor,
    chunks: int = 32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, log-probs) in one pass over the logits: tokens = argmax(logits / T + Gumbel noise(keys))
    (plain argmax when `keys` is None: greedy), log-probs under log_softmax(logits / T) (T = 1 greedy).
    `temperature` may be given as a one-element float32 tensor holding 1/T (read on the device: what a
    CUDA graph captures); `keys_B3` may be a strided view. Each row is split over `chunks` programs; a
    small torch reduction joins them. No host synchronisation: capturable."""
    b, v = logits_BV.shape
    dev = logits_BV.device
    chunk = triton.cdiv(triton.cdiv(v, chunks), 1024) * 1024
    n = triton.cdiv(v, chunk)
    best = torch.empty(b, n, dtype=torch.float32, device=dev)
    best_i = torch.empty(b, n, dtype=torch.int32, device=dev)
    m = torch.empty(b, n, dtype=torch.float32, device=dev)
    lsum = torch.empty(b, n, dtype=torch.float32, device=dev)
    if keys_B3 is None:
        inv_t = torch.ones(1, dtype=torch.float32, device=dev)
    elif isinstance(temperature, torch.Tensor):
        inv_t = temperature
    else:
        inv_t = torch.full((1,), 1.0 / temperature, dtype=torch.float32, device=dev)
    keys = keys_B3 if keys_B3 is not None else torch.zeros(b, 3, dtype=torch.int64, device=dev)
    _sample_kernel[(b, n)](
        logits_BV, keys, best, best_i, m, lsum, logits_BV.stride(0), keys.stride(0), keys.stride(1), v, chunk,
        n, inv_t, NOISE=keys_B3 is not None, BLOCK=1024,
    )  # fmt: skip
    tokens_B = best_i.gather(1, best.argmax(1, keepdim=True))[:, 0].long()
    lse_B = torch.logsumexp(m + lsum.log(), dim=1)
    logps_B = logits_BV.gather(1, tokens_B[:, None])[:, 0].float() * inv_t - lse_B
    return tokens_B, logps_B


def key_rows(seeds: list[int], steps: list[int]) -> np.ndarray:
    """(3, B) uint32 rows (seed low 32 bits, seed high 32 bits, step), the sampler's noise keys."""
    if len(seeds) != len(steps):
        raise ValueError(f"{len(seeds)} seeds for {len(steps)} steps")
    seed = np.array(seeds, dtype=np.uint64)
    out = np.empty((3, len(seeds)), dtype=np.uint32)
    out[0] = seed & np.uint64(_M32)
    out[1] = seed >> np.uint64(32)
    out[2] = np.asarray(steps, dtype=np.int64) & _M32
    return out


def sample_keys(seeds: list[int], steps: list[int], device: torch.device) -> torch.Tensor:
    """(B, 3) int64 rows (seed low 32 bits, seed high 32 bits, step) for `gumbel_sample`."""
    return to_device(torch.from_numpy(key_rows(seeds, steps).T.astype(np.int64)), device)


def gumbel_sample(logits_BV: torch.Tensor, keys_B3: torch.Tensor, temperature: float) -> torch.Tensor:
    """One token per row from softmax(logits / T) (logits may hold -inf for truncated entries)."""
    return fused_sample(logits_BV, keys_B3, temperature)[0]


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for int64 tensors holding 32-bit values, without int64 overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _M32


def _hash32_torch(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = _mul32(x, _C1)
    x = x ^ (x >> 15)
    x = _mul32(x, _C2)
    return x ^ (x >> 16)


def gumbel_noise_reference(keys_B3: torch.Tensor, vocab: int) -> torch.Tensor:
    """The kernel's Gumbel noise (B, V) in plain torch (float32), for tests and CPU fallbacks."""
    k = keys_B3.long().cpu()
    key_B = _hash32_torch(_hash32_torch(_hash32_torch(k[:, 0]) ^ k[:, 1]) + _mul32(k[:, 2], _C3) & _M32)
    h_V = _hash32_torch(torch.arange(vocab, dtype=torch.int64))
    u = (_hash32_torch(key_B[:, None] ^ h_V[None, :]) >> 8).float() * (1.0 / 16777216.0) + 0.5 / 16777216.0
    return -torch.log(-torch.log(u))
