"""Triton kernels of the engine's GPU path: attention over the paged KV cache, and fused elementwise ops
(residual add + RMSNorm, RoPE + cache write, SwiGLU). Seeded sampling is in `triton_sampling`.

`paged_attention` is one kernel for prefill chunks and decode alike. A program handles one tile of a
sequence's new tokens (BLOCK_Q of them) for one KV head; its rows are (token, query head of that KV head's
group), so grouped-query attention reads each K/V tile once for the whole group. It walks the sequence's
context BLOCK_N positions at a time, looking up each position's cache block in the block table, with an
online softmax (flash-attention style) and a causal mask offset by the cached prefix. Decode is the case
BLOCK_Q = 1 per sequence; its launch shape depends only on the batch size, so it can be captured in a CUDA
graph.

They run on CUDA; the tests run them on the CPU through Triton's interpreter (TRITON_INTERPRET=1).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _kv_tile(
    k_ptr,
    v_ptr,
    tables_ptr,
    b,
    g,
    k_pos,
    k_ok,
    d,
    stride_tb,
    stride_kb,
    stride_ks,
    stride_kh,
    BS: tl.constexpr,
):
    """K and V rows of sequence b's KV head g at positions k_pos, read through its block table."""
    blk = tl.load(tables_ptr + b * stride_tb + k_pos // BS, mask=k_ok, other=0)
    off = blk[:, None] * stride_kb + (k_pos % BS)[:, None] * stride_ks + g * stride_kh + d[None, :]
    k = tl.load(k_ptr + off, mask=k_ok[:, None], other=0.0)
    v = tl.load(v_ptr + off, mask=k_ok[:, None], other=0.0)
    return k, v


@triton.jit
def _attend(q, k, v, keep, scale, m_i, l_i, acc, IEEE: tl.constexpr):
    """One online-softmax step: fold the keys `keep` allows into the running max, sum and output."""
    if IEEE:
        s = tl.dot(q, tl.trans(k), input_precision="ieee")
    else:
        s = tl.dot(q, tl.trans(k))
    s = tl.where(keep, s * scale, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp(m_i - m_safe)
    p = tl.exp(s - m_safe[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    if IEEE:
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
    else:
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return m_new, l_i, acc


@triton.jit
def _attn_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    o_ptr,
    tables_ptr,
    ctx_lens_ptr,
    q_starts_ptr,
    q_lens_ptr,
    tile_seq_ptr,
    tile_off_ptr,
    scale,
    stride_qn,
    stride_qh,
    stride_kb,
    stride_ks,
    stride_kh,
    stride_tb,
    BS: tl.constexpr,
    GROUP: tl.constexpr,
    GP: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_N: tl.constexpr,
    D: tl.constexpr,
    IEEE: tl.constexpr,
):
    tile = tl.program_id(0)
    g = tl.program_id(1)
    b = tl.load(tile_seq_ptr + tile)
    q0 = tl.load(tile_off_ptr + tile)
    q_len = tl.load(q_lens_ptr + b)
    ctx = tl.load(ctx_lens_ptr + b)
    q_start = tl.load(q_starts_ptr + b)

    M: tl.constexpr = BLOCK_Q * GP
    r = tl.arange(0, M)
    tq = q0 + r // GP  # token index among the sequence's new tokens
    hh = r % GP
    row_ok = (tq < q_len) & (hh < GROUP)
    head = g * GROUP + hh
    q_pos = ctx - q_len + tq  # absolute position of the row's token
    d = tl.arange(0, D)
    q = tl.load(
        q_ptr + (q_start + tq)[:, None] * stride_qn + head[:, None] * stride_qh + d[None, :],
        mask=row_ok[:, None],
        other=0.0,
    )
    m_i = tl.full([M], float("-inf"), tl.float32)
    l_i = tl.zeros([M], tl.float32)
    acc = tl.zeros([M, D], tl.float32)
    end = tl.minimum(ctx - q_len + q0 + BLOCK_Q, ctx)  # keys past the tile's last query are never needed
    n = tl.arange(0, BLOCK_N)
    for start in range(0, end, BLOCK_N):
        k_pos = start + n
        k_ok = k_pos < end
        k, v = _kv_tile(
            k_ptr, v_ptr, tables_ptr, b, g, k_pos, k_ok, d, stride_tb, stride_kb, stride_ks, stride_kh, BS
        )
        keep = (k_pos[None, :] <= q_pos[:, None]) & k_ok[None, :]
        m_i, l_i, acc = _attend(q, k, v, keep, scale, m_i, l_i, acc, IEEE)
    out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
    tl.store(
        o_ptr + (q_start + tq)[:, None] * stride_qn + head[:, None] * stride_qh + d[None, :],
        out.to(o_ptr.dtype.element_ty),
        mask=row_ok[:, None],
    )


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def attention_tiles(
    q_lens: list[int], block_q: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(tile -> sequence, tile -> first new-token index) for sequences with `q_lens` new tokens."""
    seq, off = [], []
    for b, n in enumerate(q_lens):
        for t in range(0, n, block_q):
            seq.append(b)
            off.append(t)
    as_t = lambda xs: torch.tensor(xs, dtype=torch.int32, device=device)  # noqa: E731
    return as_t(seq), as_t(off)


def block_q_for(num_heads: int, num_kv_heads: int, decode: bool) -> int:
    """Query tokens per program: enough rows (tokens x group heads) to fill a 16 (decode) or 64-row tile."""
    gp = _pow2(num_heads // num_kv_heads)
    return max(1, (16 if decode else 64) // gp)


def paged_attention(
    q_NHD: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    tables_BM: torch.Tensor,
    ctx_lens_B: torch.Tensor,
    q_starts_B: torch.Tensor,
    q_lens_B: torch.Tensor,
    tile_seq_T: torch.Tensor,
    tile_off_T: torch.Tensor,
    block_q: int,
    scale: float,
    out_NHD: torch.Tensor | None = None,
    block_n: int = 64,
    num_warps: int = 4,
    num_stages: int = 2,
) -> torch.Tensor:
    """Attention of N packed new tokens over their sequences' paged context; returns (N, H, D).

    k_cache/v_cache: (num_blocks, block_size, KVH, D) with the new tokens' K/V already written. Sequence b
    owns rows [q_starts_B[b], + q_lens_B[b]) of q and has ctx_lens_B[b] context tokens (cached + new) in
    blocks tables_BM[b]. The tiles come from `attention_tiles(q_lens, block_q)`.
    """
    n, h, d = q_NHD.shape
    _, bs, kvh, _ = k_cache.shape
    if d & (d - 1) or d < 16:
        raise ValueError(f"the Triton attention needs a power-of-two head_dim >= 16, got {d}")
    group = h // kvh
    if out_NHD is None and not q_NHD.is_contiguous():
        q_NHD = q_NHD.contiguous()  # the kernel indexes its output with q's strides
    o = out_NHD if out_NHD is not None else torch.empty_like(q_NHD)
    if o.stride() != q_NHD.stride():
        raise ValueError("paged_attention: out_NHD must have the strides of q_NHD (it may be q itself)")
    grid = (tile_seq_T.shape[0], kvh)
    _attn_kernel[grid](
        q_NHD,
        k_cache,
        v_cache,
        o,
        tables_BM,
        ctx_lens_B,
        q_starts_B,
        q_lens_B,
        tile_seq_T,
        tile_off_T,
        scale,
        q_NHD.stride(0),
        q_NHD.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        tables_BM.stride(0),
        BS=bs,
        GROUP=group,
        GP=_pow2(group),
        BLOCK_Q=block_q,
        BLOCK_N=block_n,
        D=d,
        IEEE=q_NHD.dtype == torch.float32,
        num_warps=num_warps,
        num_stages=num_stages,
    )
    return o


@triton.jit
def _attn_split_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    m_ptr,
    l_ptr,
    acc_ptr,
    tables_ptr,
    ctx_lens_ptr,
    scale,
    stride_qn,
    stride_qh,
    stride_kb,
    stride_ks,
    stride_kh,
    stride_tb,
    H,
    S: tl.constexpr,
    BS: tl.constexpr,
    GROUP: tl.constexpr,
    M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    D: tl.constexpr,
    IEEE: tl.constexpr,
):
    """Decode attention, one (sequence, KV head, context split): the split's running max, sum of exp and
    unnormalised output for each of the group's heads (flash-decoding's first pass)."""
    b = tl.program_id(0)
    g = tl.program_id(1)
    sp = tl.program_id(2)
    ctx = tl.load(ctx_lens_ptr + b)
    hh = tl.arange(0, M)
    row_ok = hh < GROUP
    head = g * GROUP + hh
    d = tl.arange(0, D)
    q = tl.load(
        q_ptr + b * stride_qn + head[:, None] * stride_qh + d[None, :], mask=row_ok[:, None], other=0.0
    )
    chunk = tl.cdiv(tl.cdiv(ctx, S), BLOCK_N) * BLOCK_N
    lo = sp * chunk
    hi = tl.minimum(lo + chunk, ctx)
    m_i = tl.full([M], float("-inf"), tl.float32)
    l_i = tl.zeros([M], tl.float32)
    acc = tl.zeros([M, D], tl.float32)
    n = tl.arange(0, BLOCK_N)
    for start in range(lo, hi, BLOCK_N):
        k_pos = start + n
        k_ok = k_pos < hi
        k, v = _kv_tile(
            k_ptr, v_ptr, tables_ptr, b, g, k_pos, k_ok, d, stride_tb, stride_kb, stride_ks, stride_kh, BS
        )
        m_i, l_i, acc = _attend(q, k, v, k_ok[None, :], scale, m_i, l_i, acc, IEEE)
    row = (b * H + head) * S + sp
    tl.store(m_ptr + row, m_i, mask=row_ok)
    tl.store(l_ptr + row, l_i, mask=row_ok)
    tl.store(acc_ptr + row[:, None] * D + d[None, :], acc, mask=row_ok[:, None])


@triton.jit
def _attn_combine_kernel(
    m_ptr, l_ptr, acc_ptr, o_ptr, stride_on, stride_oh, H, S: tl.constexpr, D: tl.constexpr
):
    """One (sequence, head): the splits' partial results joined (flash-decoding's second pass)."""
    bh = tl.program_id(0)
    sp = tl.arange(0, S)
    d = tl.arange(0, D)
    m = tl.load(m_ptr + bh * S + sp)
    top = tl.max(m, 0)
    w = tl.where(m == float("-inf"), 0.0, tl.exp(m - top))
    lsum = tl.sum(w * tl.load(l_ptr + bh * S + sp), 0)
    acc = tl.sum(w[:, None] * tl.load(acc_ptr + (bh * S + sp)[:, None] * D + d[None, :]), 0)
    out = acc / tl.where(lsum == 0.0, 1.0, lsum)
    tl.store(o_ptr + (bh // H) * stride_on + (bh % H) * stride_oh + d, out.to(o_ptr.dtype.element_ty))


def paged_attention_split(
    q_BHD: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    tables_BM: torch.Tensor,
    ctx_lens_B: torch.Tensor,
    scale: float,
    splits: int,
    out_BHD: torch.Tensor | None = None,
    block_n: int = 64,
    num_warps: int = 4,
    num_stages: int = 2,
) -> torch.Tensor:
    """Decode attention (one new token per sequence, its K/V already in the cache) with each sequence's
    context cut into `splits` parts computed by separate programs, then joined: flash-decoding. More
    programs than `paged_attention`'s one per (sequence, KV head), so long contexts and small batches keep
    the GPU's memory pipes full; two launches instead of one. The launch shape depends only on the batch
    (CUDA graphs). Returns (B, H, D), written into `out_BHD` when given (it may be q itself)."""
    b, h, d = q_BHD.shape
    _, bs, kvh, _ = k_cache.shape
    if splits < 1 or splits & (splits - 1):
        raise ValueError(f"splits must be a power of two, got {splits}")
    if d & (d - 1) or d < 16:
        raise ValueError(f"the Triton attention needs a power-of-two head_dim >= 16, got {d}")
    group = h // kvh
    o = out_BHD if out_BHD is not None else torch.empty_like(q_BHD)
    m = torch.empty(b * h * splits, dtype=torch.float32, device=q_BHD.device)
    lsum = torch.empty_like(m)
    acc = torch.empty(b * h * splits, d, dtype=torch.float32, device=q_BHD.device)
    _attn_split_kernel[(b, kvh, splits)](
        q_BHD, k_cache, v_cache, m, lsum, acc, tables_BM, ctx_lens_B, scale,
        q_BHD.stride(0), q_BHD.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        tables_BM.stride(0), h,
        S=splits, BS=bs, GROUP=group, M=max(16, _pow2(group)), BLOCK_N=block_n, D=d,
        IEEE=q_BHD.dtype == torch.float32, num_warps=num_warps, num_stages=num_stages,
    )  # fmt: skip
    _attn_combine_kernel[(b * h,)](m, lsum, acc, o, o.stride(0), o.stride(1), h, S=splits, D=d)
    return o


# ------------------------------------------------------------------------------- fused elementwise ops
# Each mirrors transformers' eager arithmetic, including where it rounds to the activation dtype, so the
# fused path stays token-identical to the unfused one in float32 and within rounding in bfloat16.


@triton.jit
def _add_rmsnorm_kernel(
    x_ptr, res_ptr, w_ptr, out_ptr, res_out_ptr, E, eps, HAS_RES: tl.constexpr, BLOCK: tl.constexpr
):
    row = tl.program_id(0)
    e = tl.arange(0, BLOCK)
    ok = e < E
    RT = res_out_ptr.dtype.element_ty  # the residual stream's dtype: the norm rounds to it
    x = tl.load(x_ptr + row * E + e, mask=ok, other=0.0).to(tl.float32)
    if HAS_RES:
        x = (x + tl.load(res_ptr + row * E + e, mask=ok, other=0.0).to(tl.float32)).to(RT)
        tl.store(res_out_ptr + row * E + e, x, mask=ok)
    xf = x.to(tl.float32)
    r = 1.0 / tl.sqrt(tl.sum(xf * xf, 0) / E + eps)
    y = (xf * r).to(RT).to(tl.float32)
    w = tl.load(w_ptr + e, mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * E + e, (w * y).to(out_ptr.dtype.element_ty), mask=ok)


def add_rmsnorm(
    x_NE: torch.Tensor, weight_E: torch.Tensor, eps: float, residual_NE: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(RMSNorm(x + residual) * weight, x + residual): the residual add fused into the norm.

    Without `residual`, the second result is `x` itself. The normed output has the weight's dtype if the
    activations are float32 and the weight is not (as transformers' `weight * hidden.to(input_dtype)`)."""
    n, e = x_NE.shape
    stream = x_NE.dtype if residual_NE is None else torch.promote_types(x_NE.dtype, residual_NE.dtype)
    out = torch.empty((n, e), dtype=torch.promote_types(weight_E.dtype, stream), device=x_NE.device)
    res_out = torch.empty((n, e), dtype=stream, device=x_NE.device) if residual_NE is not None else x_NE
    res_in = residual_NE if residual_NE is not None else x_NE
    _add_rmsnorm_kernel[(n,)](
        x_NE, res_in, weight_E, out, res_out, e, eps, HAS_RES=residual_NE is not None, BLOCK=_pow2(e)
    )
    return out, res_out


@triton.jit
def _head_rmsnorm(x1, x2, w_ptr, eps, j, HALF: tl.constexpr, XT: tl.constexpr, NT: tl.constexpr):
    """transformers' RMSNorm over each head (rows) of a head's two halves (float32 values of dtype XT):
    normalised in float32, rounded to XT, times the weight, rounded to NT (the weight's and XT's
    promotion)."""
    r = 1.0 / tl.sqrt((tl.sum(x1 * x1, 1) + tl.sum(x2 * x2, 1)) / (2 * HALF) + eps)[:, None]
    w1 = tl.load(w_ptr + j).to(tl.float32)[None, :]
    w2 = tl.load(w_ptr + HALF + j).to(tl.float32)[None, :]
    y1 = (w1 * (x1 * r).to(XT).to(tl.float32)).to(NT).to(tl.float32)
    y2 = (w2 * (x2 * r).to(XT).to(tl.float32)).to(NT).to(tl.float32)
    return y1, y2


@triton.jit
def _rope_cache_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    pos_ptr,
    slot_ptr,
    inv_freq_ptr,
    kc_ptr,
    vc_ptr,
    qn_ptr,
    kn_ptr,
    scaling,
    eps,
    stride_q,
    stride_k,
    stride_v,
    H: tl.constexpr,
    KVH: tl.constexpr,
    HP: tl.constexpr,
    KP: tl.constexpr,
    HALF: tl.constexpr,
    NORM: tl.constexpr,
    NORM_F32: tl.constexpr,
):
    n = tl.program_id(0)
    QT = q_ptr.dtype.element_ty
    KT = k_ptr.dtype.element_ty
    if NORM:  # after the q/k norm the rotation runs in the norm's output dtype, as unfused
        if NORM_F32:
            DT: tl.constexpr = tl.float32
            DK: tl.constexpr = tl.float32
        else:
            DT: tl.constexpr = QT
            DK: tl.constexpr = KT
    else:
        DT: tl.constexpr = QT
        DK: tl.constexpr = KT
    pos = tl.load(pos_ptr + n).to(tl.float32)
    slot = tl.load(slot_ptr + n).to(tl.int64)
    j = tl.arange(0, HALF)
    ang = pos * tl.load(inv_freq_ptr + j).to(tl.float32)
    cos_f, sin_f = tl.cos(ang) * scaling, tl.sin(ang) * scaling
    # q: (normed and) rotated in place
    cos = cos_f.to(DT).to(tl.float32)[None, :]
    sin = sin_f.to(DT).to(tl.float32)[None, :]
    h = tl.arange(0, HP)[:, None]
    hm = h < H
    q1p = q_ptr + n * stride_q + h * (2 * HALF) + j[None, :]
    q1 = tl.load(q1p, mask=hm, other=0.0).to(tl.float32)
    q2 = tl.load(q1p + HALF, mask=hm, other=0.0).to(tl.float32)
    if NORM:
        q1, q2 = _head_rmsnorm(q1, q2, qn_ptr, eps, j, HALF, QT, DT)
    o1 = ((q1 * cos).to(DT).to(tl.float32) - (q2 * sin).to(DT).to(tl.float32)).to(DT)
    o2 = ((q2 * cos).to(DT).to(tl.float32) + (q1 * sin).to(DT).to(tl.float32)).to(DT)
    tl.store(q1p, o1.to(QT), mask=hm)
    tl.store(q1p + HALF, o2.to(QT), mask=hm)
    # k: (normed and) rotated into the cache slot; v: copied there
    cos = cos_f.to(DK).to(tl.float32)[None, :]
    sin = sin_f.to(DK).to(tl.float32)[None, :]
    g = tl.arange(0, KP)[:, None]
    gm = g < KVH
    k1p = k_ptr + n * stride_k + g * (2 * HALF) + j[None, :]
    k1 = tl.load(k1p, mask=gm, other=0.0).to(tl.float32)
    k2 = tl.load(k1p + HALF, mask=gm, other=0.0).to(tl.float32)
    if NORM:
        k1, k2 = _head_rmsnorm(k1, k2, kn_ptr, eps, j, HALF, KT, DK)
    c1 = ((k1 * cos).to(DK).to(tl.float32) - (k2 * sin).to(DK).to(tl.float32)).to(DK)
    c2 = ((k2 * cos).to(DK).to(tl.float32) + (k1 * sin).to(DK).to(tl.float32)).to(DK)
    cp = kc_ptr + slot * (KVH * 2 * HALF) + g * (2 * HALF) + j[None, :]
    CT = kc_ptr.dtype.element_ty
    tl.store(cp, c1.to(CT), mask=gm)
    tl.store(cp + HALF, c2.to(CT), mask=gm)
    vp = v_ptr + n * stride_v + g * (2 * HALF) + j[None, :]
    vcp = vc_ptr + slot * (KVH * 2 * HALF) + g * (2 * HALF) + j[None, :]
    tl.store(vcp, tl.load(vp, mask=gm, other=0.0).to(CT), mask=gm)
    tl.store(vcp + HALF, tl.load(vp + HALF, mask=gm, other=0.0).to(CT), mask=gm)


def rope_and_cache(
    q_NHD: torch.Tensor,
    k_NKD: torch.Tensor,
    v_NKD: torch.Tensor,
    positions_N: torch.Tensor,
    slots_N: torch.Tensor,
    inv_freq: torch.Tensor,
    scaling: float,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    qk_norm: tuple[torch.Tensor, torch.Tensor, float] | None = None,
) -> torch.Tensor:
    """Rotary embedding of q (in place, returned) and k, and k/v written to their cache slots, in one kernel.

    `qk_norm` (Qwen3): (q weight, k weight, eps) of a per-head RMSNorm applied to q and k first, as
    transformers does it (the rotation then runs in the norm's output dtype; q is stored back in its
    own). q/k/v may be row-strided views (e.g. of a fused projection); within a row heads must be
    contiguous."""
    n, h, d = q_NHD.shape
    kvh = k_NKD.shape[1]
    for t in (q_NHD, k_NKD, v_NKD):
        if t.stride(2) != 1 or t.stride(1) != d:
            raise ValueError("rope_and_cache needs heads contiguous within each row")
    qn, kn, eps = qk_norm if qk_norm is not None else (q_NHD, k_NKD, 0.0)
    norm_f32 = qk_norm is not None and torch.promote_types(qn.dtype, q_NHD.dtype) == torch.float32
    _rope_cache_kernel[(n,)](
        q_NHD,
        k_NKD,
        v_NKD,
        positions_N,
        slots_N,
        inv_freq,
        k_cache,
        v_cache,
        qn,
        kn,
        scaling,
        eps,
        q_NHD.stride(0),
        k_NKD.stride(0),
        v_NKD.stride(0),
        H=h,
        KVH=kvh,
        HP=_pow2(h),
        KP=_pow2(kvh),
        HALF=d // 2,
        NORM=qk_norm is not None,
        NORM_F32=norm_f32,
    )
    return q_NHD


@triton.jit
def _silu_mul_kernel(gu_ptr, out_ptr, stride, inter, BLOCK: tl.constexpr):
    """One (row, column block) of silu(gate) * up, reading gate and up from one packed row."""
    r = tl.program_id(0)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = j < inter
    DT = gu_ptr.dtype.element_ty
    g = tl.load(gu_ptr + r * stride + j, mask=ok, other=0.0).to(tl.float32)
    u = tl.load(gu_ptr + r * stride + inter + j, mask=ok, other=0.0).to(tl.float32)
    s = (g / (1.0 + tl.exp(-g))).to(DT).to(tl.float32)
    tl.store(out_ptr + r * inter + j, (s * u).to(DT), mask=ok)


def silu_mul(gate_up_N2I: torch.Tensor) -> torch.Tensor:
    """SwiGLU's silu(gate) * up, (N, I), from the gate/up GEMM's packed output (N, 2I) (gate in the first
    half of each row, up in the second): one kernel instead of two plus a strided read, rounding as eager
    torch does (silu rounded to the dtype, then the product)."""
    n, two_i = gate_up_N2I.shape
    if two_i % 2 or gate_up_N2I.stride(1) != 1:
        raise ValueError(f"need (N, 2I) rows with unit column stride, got {tuple(gate_up_N2I.shape)}")
    inter = two_i // 2
    out = gate_up_N2I.new_empty(n, inter)
    _silu_mul_kernel[(n, triton.cdiv(inter, 1024))](
        gate_up_N2I, out, gate_up_N2I.stride(0), inter, BLOCK=1024
    )
    return out
