"""A Llama-family decoder forward over a paged KV cache, reading the HF module's live weights.

Covers Llama / SmolLM2 / Qwen2 / Qwen3: RMSNorm, RoPE (the HF rotary module's `inv_freq` and
`attention_scaling`, so the config's rope_theta and static scalings such as llama3 apply), grouped-query
attention, SwiGLU MLP, tied or untied lm_head, q/k/v biases when the projections have them (Qwen2), per-head
q/k RMSNorm when the attention module has `q_norm`/`k_norm` (Qwen3).

Attention has two implementations behind `AttnMeta`: `"sdpa"` (the CPU path: SDPA over K/V gathered from the
cache; decode sequences batched with a key-padding mask, prefill sequences one by one with a causal mask
offset by their cached prefix) and `"triton"` (the GPU path: one fused kernel reading the paged cache in
place, `triton_kernels.paged_attention`; its launch shape depends only on the batch size for decode, so
decode steps can be captured in CUDA graphs).

The SDPA path copies no weight: it calls the HF submodules (`layer.self_attn.q_proj`, ...), so an optimizer
step on the trainer's model is visible to the next forward. The Triton path runs its GEMMs on
`PackedWeights` (q/k/v and gate/up each packed into one GEMM, all in the compute dtype), which
`PagedLlama.prepare` brings up to date with the live weights before each `generate` call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ponder.rollout.engine.kv_cache import KVCache


@dataclass
class AttnMeta:
    """Where each sequence's new tokens sit in the packed batch and which cache blocks hold its context.

    Sequence i owns packed rows [starts[i], starts[i] + q_lens[i]); its context (cached + new) has
    ctx_lens[i] tokens in blocks tables_BM[i, :ceil(ctx/bs)] (padded with block 0).
    """

    starts: list[int]
    q_lens: list[int]
    ctx_lens: list[int]
    tables_BM: torch.Tensor
    ctx_lens_B: torch.Tensor
    # Triton path only (int32): per-sequence row starts and new-token counts, and the kernel's tiles
    q_starts_B: torch.Tensor | None = None
    q_lens_B: torch.Tensor | None = None
    tile_seq_T: torch.Tensor | None = None
    tile_off_T: torch.Tensor | None = None
    block_q: int = 0
    splits: int = (
        1  # decode only (one new token per sequence): context splits of the attention (> 1: split-K)
    )

    @property
    def decode_only(self) -> bool:
        return all(n == 1 for n in self.q_lens)

    @property
    def last_rows(self) -> list[int] | slice:
        if self.decode_only:
            return slice(None)
        return [s + n - 1 for s, n in zip(self.starts, self.q_lens, strict=True)]

    @staticmethod
    def build(
        q_lens: list[int], ctx_lens: list[int], tables: list[list[int]], device, block_q: int = 0
    ) -> AttnMeta:
        """Metadata for the SDPA path, or for the Triton path when `block_q` (its query tile) is given."""
        starts = [0]
        for n in q_lens[:-1]:
            starts.append(starts[-1] + n)
        width = max(len(t) for t in tables)
        dtype = torch.int32 if block_q else torch.long
        tables_BM = torch.tensor([t + [0] * (width - len(t)) for t in tables], dtype=dtype, device=device)
        ctx_B = torch.tensor(ctx_lens, dtype=dtype, device=device)
        meta = AttnMeta(starts, q_lens, ctx_lens, tables_BM, ctx_B)
        if block_q:
            from ponder.rollout.engine.triton_kernels import attention_tiles

            meta.q_starts_B = torch.tensor(starts, dtype=torch.int32, device=device)
            meta.q_lens_B = torch.tensor(q_lens, dtype=torch.int32, device=device)
            meta.tile_seq_T, meta.tile_off_T = attention_tiles(q_lens, block_q, device)
            meta.block_q = block_q
        return meta

    @staticmethod
    def decode(
        tables_BM: torch.Tensor,
        ctx_lens_B: torch.Tensor,
        rows_B: torch.Tensor,
        zeros_B: torch.Tensor,
        ones_B: torch.Tensor,
        splits: int = 1,
    ) -> AttnMeta:
        """Triton-path metadata for a decode batch held in (static) device tensors: sequence b is row b,
        one new token, one tile. Host-side lists are left empty: nothing here reads the host."""
        b = tables_BM.shape[0]
        return AttnMeta([], [1] * b, [], tables_BM, ctx_lens_B, rows_B, ones_B, rows_B, zeros_B, 1, splits)


SUPPORTED = ("llama", "qwen2", "qwen3", "mistral")  # transformers `model_type`s this forward reproduces


def unsupported_reason(hf_model: torch.nn.Module) -> str | None:
    """Why the engine cannot run `hf_model` (then use transformers generate), or None when it can."""
    cfg = getattr(hf_model, "config", None)
    kind = getattr(cfg, "model_type", None)
    if kind not in SUPPORTED:
        return f"model_type {kind!r} is not one of the engine's {SUPPORTED}"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"the engine runs SwiGLU (hidden_act='silu') MLPs, not {cfg.hidden_act!r}"
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
        return f"sliding-window attention ({cfg.sliding_window}) is not implemented in the engine"
    for attr in ("model", "lm_head"):
        if not hasattr(hf_model, attr):
            return f"{type(hf_model).__name__} has no .{attr}; expected a Llama-family CausalLM"
    for layer in hf_model.model.layers:
        for name, linears in _layer_gemms(layer).items():
            if len({lin.bias is None for lin in linears}) > 1:
                return f"the {name} projections mix biased and unbiased linears (the engine packs them)"
    return None


_INT_VIEW = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.uint8}
_SAMPLED = 4096  # elements per tensor in the content checksum


def weights_fingerprint(tensors) -> tuple:
    """Changes when one of `tensors` is replaced, re-pointed (`p.data = ...`) or written. Writes through
    autograd-visible in-place ops (`load_state_dict`, foreach and per-tensor optimizer steps) bump the
    version counter; writes behind its back (fused optimizers such as `AdamW(fused=True)`, `p.data.copy_`)
    do not, and are caught by an exact checksum of the bits of up to 4,096 evenly spaced elements of each
    tensor (every dense update changes them). One device sync for all tensors."""
    tensors = list(tensors)
    if not tensors:
        return ()
    sums = [_sampled_bits(t).sum(dtype=torch.int64).to(tensors[0].device) for t in tensors]
    content = torch.stack(sums).tolist()
    return tuple((id(t), t.data_ptr(), t._version, c) for t, c in zip(tensors, content, strict=True))


def model_fingerprint(model: torch.nn.Module) -> tuple:
    """`weights_fingerprint` of all of a model's parameters and buffers."""
    return weights_fingerprint([*model.parameters(), *model.buffers()])


def _sampled_bits(t: torch.Tensor) -> torch.Tensor:
    flat = t.detach().reshape(-1)
    flat = flat[:: max(1, flat.numel() // _SAMPLED)]
    return flat.view(_INT_VIEW[flat.element_size()])


def _layer_gemms(layer: torch.nn.Module) -> dict[str, tuple[torch.nn.Module, ...]]:
    """A decoder layer's GEMMs on the Triton path: name -> the HF linears packed into it (output rows
    in this order)."""
    a, m = layer.self_attn, layer.mlp
    return {
        "qkv": (a.q_proj, a.k_proj, a.v_proj),
        "o": (a.o_proj,),
        "gate_up": (m.gate_proj, m.up_proj),
        "down": (m.down_proj,),
    }


class PackedWeights:
    """The Triton path's GEMM weights in one compute dtype, as (weight, bias) pairs: per layer `qkv` =
    cat(q, k, v) and `gate_up` = cat(gate, up) along the output rows, `o` and `down`; and `lm_head`.

    Why: 4 GEMMs a layer instead of 7 (small decode GEMMs cost their launch more than their math), and no
    weight cast inside a decode step. Under the trainer's autocast (float32 parameters, bfloat16 compute)
    the CUDA graphs cannot use autocast's cast cache (it is freed when a `generate` call ends), so every
    replay would re-cast every weight; here each weight is cast once per update.

    `refresh` rewrites the buffers when the weights changed (`weights_fingerprint`: replaced, re-pointed or
    written, also behind the version counters by a fused optimizer), in place: the buffers keep their
    addresses, so captured CUDA graphs stay valid. A tensor moves (and `epoch` is bumped, so graphs are
    recaptured) only when a buffer must be reallocated (new compute dtype) or when it is a parameter itself
    that was replaced.

    Memory: one extra copy of the q/k/v and gate/up weights in the compute dtype, even when the parameters
    already are in it (packing copies). `o`, `down` and `lm_head` are the parameters themselves when they
    are in the compute dtype, else copies too (float32 parameters under bfloat16 autocast: half the size of
    all the GEMM weights, lm_head included, which is the embedding's size when tied).
    """

    def __init__(self) -> None:
        self.dtype: torch.dtype | None = None  # None until the first `refresh`
        self.layers: list[dict[str, tuple[torch.Tensor, torch.Tensor | None]]] = []
        self.lm_head: tuple[torch.Tensor, torch.Tensor | None] = (torch.empty(0), None)
        self.epoch = 0
        self._stamp: tuple | None = None  # (dtype, model_fingerprint) at the last refresh
        self._tensors: dict[tuple, torch.Tensor] = {}
        self._owned: set[tuple] = set()  # keys whose tensor is a buffer allocated here (not a parameter)

    @torch.no_grad()
    def refresh(self, hf: torch.nn.Module, dtype: torch.dtype, weights: tuple | None = None) -> None:
        """Bring every packed tensor up to date with `hf`'s weights, in `dtype`; nothing is written when
        the weights and dtype are what they were at the last refresh. `weights` is `model_fingerprint(hf)`
        when the caller has it already."""
        stamp = (dtype, weights if weights is not None else model_fingerprint(hf))
        if stamp == self._stamp:
            return
        gemms = [_layer_gemms(layer) for layer in hf.model.layers]
        pair = lambda key, linears: tuple(  # noqa: E731
            self._update((*key, part), [getattr(lin, part) for lin in linears], dtype)
            for part in ("weight", "bias")
        )
        self.layers = [{name: pair((i, name), lins) for name, lins in g.items()} for i, g in enumerate(gemms)]
        self.lm_head = pair(("lm_head",), [hf.lm_head])
        self.dtype, self._stamp = dtype, stamp

    def addresses(self) -> tuple:
        return tuple(t.data_ptr() for t in self._tensors.values())

    def _update(self, key: tuple, sources: list, dtype: torch.dtype) -> torch.Tensor | None:
        if sources[0] is None:  # no bias (`unsupported_reason` refuses a mix)
            return None
        old = self._tensors.get(key)
        shape = (sum(s.shape[0] for s in sources), *sources[0].shape[1:])
        device = sources[0].device
        if len(sources) == 1 and sources[0].dtype == dtype:
            new = sources[0].detach()  # the parameter itself: no copy
            self._owned.discard(key)
        else:
            if not (key in self._owned and (old.shape, old.dtype, old.device) == (shape, dtype, device)):
                old = None  # a new buffer
                self._owned.add(key)
            new = old if old is not None else torch.empty(shape, dtype=dtype, device=device)
            row = 0
            for s in sources:
                new[row : row + s.shape[0]].copy_(s)
                row += s.shape[0]
        if key not in self._tensors or new.data_ptr() != self._tensors[key].data_ptr():
            self.epoch += 1
        self._tensors[key] = new
        return new


class PagedLlama:
    """Runs a transformers Llama-family `*ForCausalLM` over a `KVCache`; holds the module, not its tensors."""

    def __init__(self, hf_model: torch.nn.Module) -> None:
        reason = unsupported_reason(hf_model)
        if reason is not None:
            raise ValueError(f"the rollout engine cannot run this model: {reason}")
        cfg = hf_model.config
        self.hf = hf_model
        self.num_layers = cfg.num_hidden_layers
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = getattr(cfg, "num_key_value_heads", None) or self.num_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.num_heads
        self.packed = PackedWeights()  # the Triton path's weights, filled by `prepare`

    @property
    def dtype(self) -> torch.dtype:
        return self.hf.lm_head.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.hf.lm_head.weight.device

    def rope(self, positions_N: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin (N, 1, D) for the given positions, computed as HF's rotary module does (float32)."""
        rotary = self.hf.model.rotary_emb
        freqs = positions_N[:, None].float() * rotary.inv_freq.float()[None, :]  # (N, D/2)
        emb = torch.cat((freqs, freqs), dim=-1)[:, None, :]
        scale = getattr(rotary, "attention_scaling", 1.0)
        return (emb.cos() * scale).to(dtype), (emb.sin() * scale).to(dtype)

    def prepare(self, dtype: torch.dtype, weights: tuple | None = None) -> None:
        """Bring the Triton path's packed weights up to date with the live parameters, in `dtype` (the
        compute dtype: autocast's when it is on, else the parameters'). Call it before the Triton path runs
        after the weights changed (the engine does, at the start of each `generate`, passing the call's
        `model_fingerprint`); cheap when they did not."""
        self.packed.refresh(self.hf, dtype, weights)

    @torch.no_grad()
    def forward(
        self,
        cache: KVCache,
        tokens_N: torch.Tensor,
        positions_N: torch.Tensor,
        slots_N: torch.Tensor,
        meta: AttnMeta,
    ) -> torch.Tensor:
        """Logits (S, V) in float32 at the last new token of each of the S sequences in `meta`."""
        h_SE = self.hidden(cache, tokens_N, positions_N, slots_N, meta)
        return self.logits(h_SE, packed=meta.tile_seq_T is not None)

    @torch.no_grad()
    def logits(self, h_SE: torch.Tensor, packed: bool = False) -> torch.Tensor:
        """Logits of final hidden states (kept out of the CUDA graphs: one large GEMM): float32, or with
        `packed` (the Triton path) through the packed lm_head in its compute dtype: the GPU sampler reads
        them into float32 registers, and a float32 copy would cost a write and a read of B x V x 4 bytes
        every decode step (~60 us at batch 256 and a 152k vocabulary on an H200)."""
        if not packed:
            return self.hf.lm_head(h_SE).float()
        if self.packed.dtype is None:
            raise RuntimeError("PagedLlama.prepare(dtype) must run before the Triton path")
        weight, bias = self.packed.lm_head
        return F.linear(h_SE.to(weight.dtype), weight, bias)

    @torch.no_grad()
    def hidden(
        self,
        cache: KVCache,
        tokens_N: torch.Tensor,
        positions_N: torch.Tensor,
        slots_N: torch.Tensor,
        meta: AttnMeta,
    ) -> torch.Tensor:
        """Final-norm hidden states (S, E) at the last new token of each sequence; writes the new K/V."""
        if meta.tile_seq_T is not None:
            return self._hidden_fused(cache, tokens_N, positions_N, slots_N, meta)
        h_NE = self.hf.model.embed_tokens(tokens_N)
        cos, sin = self.rope(positions_N, h_NE.dtype)
        for i, layer in enumerate(self.hf.model.layers):
            h_NE = h_NE + self._attention(
                i, layer, layer.input_layernorm(h_NE), cos, sin, cache, slots_N, meta
            )
            x = layer.post_attention_layernorm(h_NE)
            mlp = layer.mlp
            h_NE = h_NE + mlp.down_proj(F.silu(mlp.gate_proj(x)) * mlp.up_proj(x))
        return self.hf.model.norm(h_NE[meta.last_rows])

    def _hidden_fused(self, cache, tokens_N, positions_N, slots_N, meta: AttnMeta) -> torch.Tensor:
        """`hidden` on the Triton path: residual add + RMSNorm, RoPE + cache write are one kernel each,
        attention reads the paged cache in place, q/k/v and gate/up are one GEMM each on the packed weights
        (per layer: 4 GEMMs and 5 small kernels, 2 more under autocast with float32 norm weights).

        Autocast is off in here: the GEMM weights are already in the compute dtype (`prepare`), activations
        are cast explicitly, so no weight cast is ever captured in a CUDA graph. The embedding, norms and
        residual stream read the HF tensors in their own dtype, as the trainer's autocast forward does
        (float32 parameters: a float32 residual stream)."""
        from ponder.rollout.engine import triton_kernels as tk

        packed = self.packed
        if packed.dtype is None:
            raise RuntimeError("PagedLlama.prepare(dtype) must run before the Triton path")
        dt = packed.dtype
        m = self.hf.model
        rotary = m.rotary_emb
        scaling = float(getattr(rotary, "attention_scaling", 1.0))
        n, d = tokens_N.shape[0], self.head_dim
        widths = [self.num_heads * d, self.num_kv_heads * d, self.num_kv_heads * d]
        with torch.autocast(self.device.type, enabled=False):
            x_NE, res_NE = m.embed_tokens(tokens_N), None
            for i, (layer, w) in enumerate(zip(m.layers, packed.layers, strict=True)):
                ln = layer.input_layernorm
                h_NE, res_NE = tk.add_rmsnorm(x_NE, ln.weight, ln.variance_epsilon, res_NE)
                qkv_NF = F.linear(h_NE.to(dt), *w["qkv"])  # (N, (H + 2 KVH) D): a token's q, k, v in one row
                q, k, v = (t.view(n, -1, d) for t in qkv_NF.split(widths, dim=1))  # row-strided views
                attn = layer.self_attn
                qk_norm = None
                if getattr(attn, "q_norm", None) is not None:  # Qwen3: RMSNorm per head before RoPE
                    eps = attn.q_norm.variance_epsilon
                    if attn.k_norm.variance_epsilon == eps:  # fused into the rope kernel
                        qk_norm = (attn.q_norm.weight, attn.k_norm.weight, eps)
                    else:
                        q, k = attn.q_norm(q), attn.k_norm(k)
                q = tk.rope_and_cache(
                    q, k, v, positions_N, slots_N, rotary.inv_freq, scaling, cache.k[i], cache.v[i], qk_norm
                ).to(cache.dtype)
                # written over q (each program reads only the q rows it writes): the kernel indexes its
                # output with q's strides, so it must not get a fresh contiguous buffer for a strided q
                scale = getattr(attn, "scaling", self.head_dim**-0.5)
                if meta.splits > 1:  # decode: rows are sequences, one token each
                    o_NHD = tk.paged_attention_split(
                        q, cache.k[i], cache.v[i], meta.tables_BM, meta.ctx_lens_B, scale, meta.splits, q
                    )
                else:
                    o_NHD = tk.paged_attention(
                        q,
                        cache.k[i],
                        cache.v[i],
                        meta.tables_BM,
                        meta.ctx_lens_B,
                        meta.q_starts_B,
                        meta.q_lens_B,
                        meta.tile_seq_T,
                        meta.tile_off_T,
                        meta.block_q,
                        scale,
                        out_NHD=q,
                    )
                x_NE = F.linear(o_NHD.flatten(1).to(dt), *w["o"])
                ln = layer.post_attention_layernorm
                h_NE, res_NE = tk.add_rmsnorm(x_NE, ln.weight, ln.variance_epsilon, res_NE)
                x_NE = F.linear(tk.silu_mul(F.linear(h_NE.to(dt), *w["gate_up"])), *w["down"])
            rows = meta.last_rows
            out, _ = tk.add_rmsnorm(x_NE[rows], m.norm.weight, m.norm.variance_epsilon, res_NE[rows])
        return out

    def _attention(self, i, layer, x_NE, cos, sin, cache: KVCache, slots_N, meta: AttnMeta) -> torch.Tensor:
        attn = layer.self_attn
        n = x_NE.shape[0]
        q = attn.q_proj(x_NE).view(n, self.num_heads, self.head_dim)
        k = attn.k_proj(x_NE).view(n, self.num_kv_heads, self.head_dim)
        v = attn.v_proj(x_NE).view(n, self.num_kv_heads, self.head_dim)
        if getattr(attn, "q_norm", None) is not None:  # Qwen3: RMSNorm per head before RoPE
            q, k = attn.q_norm(q), attn.k_norm(k)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        cache.write(i, slots_N, k, v)
        scale = getattr(attn, "scaling", self.head_dim**-0.5)
        o_NHD = paged_attention(q.to(cache.dtype), cache.k[i], cache.v[i], meta, scale)
        return attn.o_proj(o_NHD.reshape(n, self.num_heads * self.head_dim))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def paged_attention(
    q_NHD: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, meta: AttnMeta, scale: float
) -> torch.Tensor:
    """Attention of the new tokens over each sequence's cached context; returns (N, H, D).

    k_cache/v_cache are (num_blocks, block_size, KVH, D); the new tokens' K/V are already written.
    """
    bs = k_cache.shape[1]
    if meta.decode_only:
        width = meta.tables_BM.shape[1] * bs
        k_BKHD = k_cache[meta.tables_BM].flatten(1, 2)  # (B, M*bs, KVH, D)
        v_BKHD = v_cache[meta.tables_BM].flatten(1, 2)
        mask_B11K = (torch.arange(width, device=q_NHD.device)[None, :] < meta.ctx_lens_B[:, None])[
            :, None, None
        ]
        o = F.scaled_dot_product_attention(
            q_NHD[:, :, None, :],  # (B, H, 1, D)
            k_BKHD.transpose(1, 2),
            v_BKHD.transpose(1, 2),
            attn_mask=mask_B11K,
            scale=scale,
            enable_gqa=True,
        )
        return o[:, :, 0, :]
    out = []
    for b, (start, n, ctx) in enumerate(zip(meta.starts, meta.q_lens, meta.ctx_lens, strict=True)):
        blocks = meta.tables_BM[b, : -(-ctx // bs)]
        k_KHD = k_cache[blocks].flatten(0, 1)[:ctx]
        v_KHD = v_cache[blocks].flatten(0, 1)[:ctx]
        q_pos = torch.arange(ctx - n, ctx, device=q_NHD.device)
        mask_QK = torch.arange(ctx, device=q_NHD.device)[None, :] <= q_pos[:, None]
        o = F.scaled_dot_product_attention(
            q_NHD[start : start + n].transpose(0, 1)[None],  # (1, H, n, D)
            k_KHD.transpose(0, 1)[None],
            v_KHD.transpose(0, 1)[None],
            attn_mask=mask_QK,
            scale=scale,
            enable_gqa=True,
        )
        out.append(o[0].transpose(0, 1))
    return torch.cat(out, dim=0)
