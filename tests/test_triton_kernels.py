"""The engine's Triton kernels against torch references, on the CPU via Triton's interpreter (conftest.py)."""

import numpy as np
import pytest
import torch

from ponder.rollout.engine import triton_kernels as tk
from ponder.rollout.engine import triton_sampling as ts
from ponder.rollout.engine.model import AttnMeta
from ponder.rollout.engine.model import paged_attention as sdpa_paged_attention


def _random_case(q_lens, ctx_lens, heads, kv_heads, d, bs, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    num_blocks = sum(-(-c // bs) for c in ctx_lens) + 3
    k_cache = torch.randn(num_blocks, bs, kv_heads, d, generator=g).to(dtype)
    v_cache = torch.randn(num_blocks, bs, kv_heads, d, generator=g).to(dtype)
    perm = torch.randperm(num_blocks, generator=g).tolist()  # scattered, non-contiguous blocks
    tables, i = [], 0
    for c in ctx_lens:
        n = -(-c // bs)
        tables.append(perm[i : i + n])
        i += n
    q = torch.randn(sum(q_lens), heads, d, generator=g).to(dtype)
    return q, k_cache, v_cache, tables


@pytest.mark.parametrize(
    "q_lens,ctx_lens,heads,kv_heads,d,bs",
    [
        ([1, 1, 1], [5, 70, 33], 4, 2, 16, 16),  # decode, GQA
        ([7, 1, 40], [7, 20, 90], 14, 2, 32, 16),  # prefill, decode, prefill after a cached prefix
        ([3, 66], [3, 130], 6, 6, 16, 8),  # multi-head, small blocks
        ([1, 5], [200, 5], 12, 2, 64, 32),  # group 6 (padded to 8), big head
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])  # the interpreter has no bf16
def test_paged_attention_matches_sdpa(q_lens, ctx_lens, heads, kv_heads, d, bs, dtype):
    q, kc, vc, tables = _random_case(q_lens, ctx_lens, heads, kv_heads, d, bs, dtype)
    meta = AttnMeta.build(q_lens, ctx_lens, tables, "cpu")
    want = sdpa_paged_attention(q.float(), kc.float(), vc.float(), meta, d**-0.5)
    decode = all(n == 1 for n in q_lens)
    block_q = tk.block_q_for(heads, kv_heads, decode)
    tile_seq, tile_off = tk.attention_tiles(q_lens, block_q, "cpu")
    i32 = lambda xs: torch.tensor(xs, dtype=torch.int32)  # noqa: E731
    got = tk.paged_attention(
        q,
        kc,
        vc,
        meta.tables_BM.to(torch.int32),
        i32(ctx_lens),
        i32(meta.starts),
        i32(q_lens),
        tile_seq,
        tile_off,
        block_q,
        d**-0.5,
    )
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(got.float(), want, atol=tol, rtol=tol)


@pytest.mark.parametrize("splits", [1, 2, 8])
@pytest.mark.parametrize(
    "ctx_lens,heads,kv_heads,d,bs",
    [
        ([5, 70, 33, 1], 4, 2, 16, 16),  # GQA; contexts shorter than one split's block (empty splits)
        ([200, 130, 17], 14, 2, 32, 16),  # group 7 (padded), several blocks per split
        ([3, 66], 6, 6, 16, 8),  # multi-head
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_split_decode_attention_matches_sdpa(splits, ctx_lens, heads, kv_heads, d, bs, dtype):
    q_lens = [1] * len(ctx_lens)
    q, kc, vc, tables = _random_case(q_lens, ctx_lens, heads, kv_heads, d, bs, dtype, seed=splits)
    meta = AttnMeta.build(q_lens, ctx_lens, tables, "cpu")
    want = sdpa_paged_attention(q.float(), kc.float(), vc.float(), meta, d**-0.5)
    ctx = torch.tensor(ctx_lens, dtype=torch.int32)
    got = tk.paged_attention_split(
        q, kc, vc, meta.tables_BM.to(torch.int32), ctx, d**-0.5, splits, block_n=16
    )
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(got.float(), want, atol=tol, rtol=tol)
    strided = torch.cat([q, torch.zeros_like(q)], dim=1)[:, :heads]  # q as a view of a packed projection
    tk.paged_attention_split(
        strided, kc, vc, meta.tables_BM.to(torch.int32), ctx, d**-0.5, splits, strided, 16
    )
    torch.testing.assert_close(strided.float(), want, atol=tol, rtol=tol)  # written over q in place
    with pytest.raises(ValueError, match="power of two"):
        tk.paged_attention_split(q, kc, vc, meta.tables_BM.to(torch.int32), ctx, 1.0, 3)


def test_paged_attention_takes_a_strided_q():
    """q as a view of a packed qkv projection (rows with gaps): the result is the contiguous one's."""
    q_lens, ctx_lens = [1, 6], [9, 6]
    q, kc, vc, tables = _random_case(q_lens, ctx_lens, 4, 2, 16, 8, torch.float32, seed=3)
    packed = torch.cat([q, torch.randn(q.shape[0], 4, 16)], dim=1)  # (N, 2H, D): q is the first half
    meta = AttnMeta.build(q_lens, ctx_lens, tables, "cpu")
    tile_seq, tile_off = tk.attention_tiles(q_lens, tk.block_q_for(4, 2, False), "cpu")
    i32 = lambda xs: torch.tensor(xs, dtype=torch.int32)  # noqa: E731
    args = (kc, vc, meta.tables_BM.to(torch.int32), i32(ctx_lens), i32(meta.starts), i32(q_lens))
    rest = (tile_seq, tile_off, tk.block_q_for(4, 2, False), 16**-0.5)
    want = tk.paged_attention(q, *args, *rest)
    torch.testing.assert_close(tk.paged_attention(packed[:, :4], *args, *rest), want)
    with pytest.raises(ValueError, match="strides"):
        tk.paged_attention(packed[:, :4], *args, *rest, out_NHD=torch.empty_like(q))


def test_head_dim_must_be_power_of_two():
    q, kc, vc, tables = _random_case([1], [4], 2, 2, 24, 16, torch.float32)
    meta = AttnMeta.build([1], [4], tables, "cpu")
    ts, to = tk.attention_tiles([1], 8, "cpu")
    one = torch.ones(1, dtype=torch.int32)
    with pytest.raises(ValueError, match="head_dim"):
        tk.paged_attention(q, kc, vc, meta.tables_BM, one * 4, one * 0, one, ts, to, 8, 1.0)


def test_gumbel_sample_matches_reference_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 3000, generator=g) * 3
    logits[2, 100:] = float("-inf")  # a truncated row only draws from its survivors
    logits[4] = logits[3]
    seeds = [11, 11, 2**40 + 5, 7, 7, 9]
    steps = [0, 1, 0, 3, 3, 0]
    keys = ts.sample_keys(seeds, steps, "cpu")
    tokens = ts.gumbel_sample(logits, keys, temperature=0.7)
    want = (logits / 0.7 + ts.gumbel_noise_reference(keys, 3000)).argmax(-1)
    assert tokens.tolist() == want.tolist()
    assert tokens[2] < 100
    assert tokens[3] == tokens[4]  # same seed, step and logits: same token
    again = ts.gumbel_sample(logits[[4, 0]], ts.sample_keys([7, 11], [3, 0], "cpu"), 0.7)
    assert again.tolist() == [tokens[4].item(), tokens[0].item()]  # independent of the batch


def test_gumbel_noise_follows_the_softmax():
    logits = torch.tensor([[0.0, 1.0, 2.0]]).expand(20000, 3)
    keys = ts.sample_keys([3] * 20000, list(range(20000)), "cpu")
    tokens = (logits + ts.gumbel_noise_reference(keys, 3)).argmax(-1)
    freq = torch.bincount(tokens, minlength=3).float() / 20000
    torch.testing.assert_close(freq, torch.tensor([0.0, 1.0, 2.0]).softmax(0), atol=0.015, rtol=0)


def test_engine_on_the_triton_path_matches_the_sdpa_path():
    from ponder.config import SamplingConfig
    from ponder.model import load_model
    from ponder.rollout.engine import Engine

    model, tok = load_model("tiny")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    prompts = [tok.encode(t) for t in ["2+2=", "hello world, the engine", "abc"]] * 2
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=12)
    kw = dict(num_blocks=64, block_size=4, max_batch=4)
    ref = Engine(model, tok, attention="sdpa", **kw).generate(prompts, sampling, seed=3)
    for splits in (1, 4):  # 4: decode attention split over the context (flash-decoding)
        engine = Engine(model, tok, attention="triton", decode_splits=splits, **kw)
        got = engine.generate(prompts, sampling, seed=3)
        assert [o.token_ids for o in got] == [o.token_ids for o in ref]
        for a, b in zip(got, ref, strict=True):
            torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="decode_splits"):
        Engine(model, tok, decode_splits=3, **kw)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_fused_norm_rope_cache_and_silu_match_transformers_math(dtype):
    from transformers.models.llama.modeling_llama import LlamaRMSNorm, apply_rotary_pos_emb

    g = torch.Generator().manual_seed(0)
    n, e, h, kvh, d = 5, 48, 4, 2, 16
    x = torch.randn(n, e, generator=g).to(dtype)
    res = torch.randn(n, e, generator=g).to(dtype)
    norm = LlamaRMSNorm(e, eps=1e-5).to(dtype)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(e, generator=g) + 0.5)
    out, new_res = tk.add_rmsnorm(x, norm.weight.data, 1e-5, res)
    tol = dict(atol=1e-6, rtol=1e-6) if dtype == torch.float32 else dict(atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(new_res, x + res, atol=0, rtol=0)
    torch.testing.assert_close(out, norm(x + res).detach(), **tol)
    torch.testing.assert_close(tk.add_rmsnorm(x, norm.weight.data, 1e-5)[0], norm(x).detach(), **tol)

    q = torch.randn(n, h, d, generator=g).to(dtype)
    k = torch.randn(n, kvh, d, generator=g).to(dtype)
    v = torch.randn(n, kvh, d, generator=g).to(dtype)
    pos = torch.tensor([0, 3, 7, 100, 2047])
    inv_freq = 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d))
    freqs = pos[:, None].float() * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), -1)
    cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)
    q_HND, k_HND = q.transpose(0, 1)[None], k.transpose(0, 1)[None]
    want_q, want_k = apply_rotary_pos_emb(q_HND, k_HND, cos[None], sin[None])
    want_q, want_k = want_q[0], want_k[0]  # (H, N, D)
    kc = torch.zeros(4, 4, kvh, d, dtype=dtype)
    vc = torch.zeros(4, 4, kvh, d, dtype=dtype)
    slots = torch.tensor([0, 5, 6, 9, 15])
    got_q = tk.rope_and_cache(q.clone(), k, v, pos, slots, inv_freq, 1.0, kc, vc)
    torch.testing.assert_close(got_q, want_q.transpose(0, 1), **tol)
    torch.testing.assert_close(kc.view(-1, kvh, d)[slots], want_k.transpose(0, 1), **tol)
    torch.testing.assert_close(vc.view(-1, kvh, d)[slots], v, atol=0, rtol=0)

    gate_up = torch.randn(3, 2 * 1100, generator=g).to(dtype)  # a row: gate (1100) then up (1100)
    gate, up = gate_up.chunk(2, dim=1)
    want = torch.nn.functional.silu(gate) * up
    torch.testing.assert_close(tk.silu_mul(gate_up), want, **tol)
    with pytest.raises(ValueError, match="unit column stride"):
        tk.silu_mul(gate_up.t())


@pytest.mark.parametrize(
    "dtype,norm_dtype", [(torch.float32,) * 2, (torch.float16,) * 2, (torch.float16, torch.float32)]
)
def test_rope_with_the_qk_norm_fused_matches_the_unfused_qwen3_math(dtype, norm_dtype):
    """Qwen3: the per-head q/k RMSNorm inside the rope kernel gives what transformers' norm followed by
    the plain kernel gives, in the activations' dtype and with float32 norm weights (the trainer's)."""
    from transformers.models.qwen3.modeling_qwen3 import Qwen3RMSNorm

    g = torch.Generator().manual_seed(3)
    n, h, kvh, d = 6, 8, 2, 32
    qkv = torch.randn(n, (h + 2 * kvh) * d, generator=g).to(dtype) * 3  # strided views, as the engine's
    q, k, v = (t.view(n, -1, d) for t in qkv.split([h * d, kvh * d, kvh * d], dim=1))
    norms = [Qwen3RMSNorm(d, eps=1e-6).to(norm_dtype) for _ in range(2)]
    with torch.no_grad():
        for m in norms:
            m.weight.copy_(torch.rand(d, generator=g) + 0.5)
    pos, slots = torch.tensor([0, 1, 9, 300, 4000, 77]), torch.tensor([3, 0, 7, 12, 15, 8])
    inv_freq = 1.0 / (1e6 ** (torch.arange(0, d, 2).float() / d))
    caches = [[torch.zeros(4, 4, kvh, d, dtype=dtype) for _ in range(2)] for _ in range(2)]
    with torch.no_grad():
        qn, kn = norms[0](q.clone()), norms[1](k.clone())
    want_q = tk.rope_and_cache(qn, kn, v, pos, slots, inv_freq, 1.0, *caches[0]).to(dtype)
    weights = (norms[0].weight.data, norms[1].weight.data, 1e-6)
    got_q = tk.rope_and_cache(q.clone(), k, v, pos, slots, inv_freq, 1.0, *caches[1], qk_norm=weights)
    assert got_q.dtype == dtype
    tol = dict(atol=1e-6, rtol=1e-6) if dtype == torch.float32 else dict(atol=0, rtol=0)
    torch.testing.assert_close(got_q, want_q, **tol)
    torch.testing.assert_close(caches[1][0], caches[0][0], **tol)
    torch.testing.assert_close(caches[1][1], caches[0][1], atol=0, rtol=0)


@pytest.mark.parametrize("temperature", [0.0, 0.6, 1.0])
def test_fused_sample_gives_the_tokens_and_logprobs_of_the_reference(temperature):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 5000, generator=g) * 4
    logits[1, :4000] = float("-inf")  # a masked stretch spanning whole chunks
    keys = ts.sample_keys([1, 2, 3, 4, 5], [0, 9, 2, 2, 7], "cpu") if temperature else None
    tokens, logps = ts.fused_sample(logits, keys, temperature or 1.0, chunks=4)
    scaled = logits / (temperature or 1.0)
    want = scaled + ts.gumbel_noise_reference(keys, 5000) if temperature else scaled
    assert tokens.tolist() == want.argmax(-1).tolist()
    ref = scaled.log_softmax(-1).gather(1, tokens[:, None])[:, 0]
    torch.testing.assert_close(logps, ref, atol=1e-4, rtol=1e-5)


def test_fused_sample_reads_int32_key_rows_and_a_temperature_tensor():
    """The CUDA-graph form of the sampler's inputs: keys as int32 bit patterns in (3, B) rows (strided (B, 3)
    view), 1/T in a device tensor. Same tokens and log-probs as int64 keys and a float temperature,
    seeds past 2**31 included (negative as int32)."""
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 3000, generator=g) * 3
    seeds, steps = [1, 2**31 + 5, 2**63 - 1, 77], [0, 3, 2**32 + 9, 12]
    want = ts.fused_sample(logits, ts.sample_keys(seeds, steps, "cpu"), 0.7, chunks=4)
    rows = torch.from_numpy(ts.key_rows(seeds, steps).view(np.int32).copy())  # (3, B) int32
    assert (rows < 0).any()
    got = ts.fused_sample(logits, rows.t(), torch.tensor([1 / 0.7]), chunks=4)
    assert got[0].tolist() == want[0].tolist()
    torch.testing.assert_close(got[1], want[1])
