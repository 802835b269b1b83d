"""The Triton path's packed weights (`model.PackedWeights`): packing, casting, in-place refresh after weight
updates, buffer addresses (what the CUDA graphs read), and generation on them against fresh engines, the SDPA
path and the trainer's forward. The Triton kernels run in Triton's CPU interpreter (conftest.py), which has
no bfloat16: the autocast cases run in float16.

python -m pytest -q tests/test_engine_weights.py
"""

from __future__ import annotations

import pytest
import torch
from conftest import sharpen
from transformers import Qwen2Config, Qwen2ForCausalLM

from ponder.config import SamplingConfig
from ponder.model import load_model
from ponder.rollout.engine import Engine
from ponder.rollout.engine.cuda_graphs import fingerprint
from ponder.rollout.engine.model import PackedWeights

GREEDY = SamplingConfig(temperature=0, max_new_tokens=10)
SAMPLE = SamplingConfig(temperature=1.0, max_new_tokens=10)
TEXTS = ["2+2=", "hello world, the engine", "abc"]
KW = dict(num_blocks=64, block_size=4, max_batch=4, attention="triton")


def _qwen2() -> torch.nn.Module:  # q/k/v biases, untied lm_head
    cfg = Qwen2Config(
        vocab_size=260, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False, eos_token_id=3,
        pad_token_id=0, rope_theta=1e6,
    )  # fmt: skip
    torch.manual_seed(0)
    model = sharpen(Qwen2ForCausalLM(cfg).eval(), std=0.3)
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = 3, 0
    return model


def _tokens(engine: Engine, prompts, sampling=GREEDY) -> list[list[int]]:
    return [o.token_ids for o in engine.generate(prompts, sampling, seed=0)]


def _nudge(model: torch.nn.Module, seed: int, scale: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # in place, as an optimizer step does
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


def test_packing_casts_aliases_and_refreshes_in_place():
    model = _qwen2()
    layer = model.model.layers[1]
    a, m = layer.self_attn, layer.mlp
    packed = PackedWeights()
    packed.refresh(model, torch.float32)
    w = packed.layers[1]
    want_qkv = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
    assert torch.equal(w["qkv"][0], want_qkv)
    assert torch.equal(w["qkv"][1], torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
    assert torch.equal(w["gate_up"][0], torch.cat([m.gate_proj.weight, m.up_proj.weight]))
    assert w["o"][1] is None and w["gate_up"][1] is None
    # a single weight already in the compute dtype is the parameter itself; packed ones are copies
    assert w["o"][0].data_ptr() == a.o_proj.weight.data_ptr()
    assert packed.lm_head[0].data_ptr() == model.lm_head.weight.data_ptr()
    assert w["qkv"][0].data_ptr() != a.q_proj.weight.data_ptr()
    assert not w["qkv"][0].requires_grad and w["qkv"][0].grad_fn is None

    # unchanged weights: nothing is rewritten (a scribble on a buffer survives the refresh)
    before, epoch, qkv_at = packed.addresses(), packed.epoch, w["qkv"][0].data_ptr()
    w["gate_up"][0][0, 0] = 123.0
    packed.refresh(model, torch.float32)
    assert packed.layers[1]["gate_up"][0][0, 0] == 123.0 and packed.epoch == epoch

    # an in-place update is copied into the same buffers
    _nudge(model, seed=1, scale=0.1)
    packed.refresh(model, torch.float32)
    w = packed.layers[1]
    assert packed.addresses() == before and packed.epoch == epoch
    assert torch.equal(w["qkv"][0], torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
    assert torch.equal(w["gate_up"][0], torch.cat([m.gate_proj.weight, m.up_proj.weight]))

    # a replaced parameter: a packed buffer takes its values in place, an aliased one follows it
    a.q_proj.weight = torch.nn.Parameter(torch.randn_like(a.q_proj.weight))
    a.o_proj.weight = torch.nn.Parameter(torch.randn_like(a.o_proj.weight))
    packed.refresh(model, torch.float32)
    w = packed.layers[1]
    assert w["qkv"][0].data_ptr() == qkv_at
    assert torch.equal(w["qkv"][0][: a.q_proj.weight.shape[0]], a.q_proj.weight)
    assert w["o"][0].data_ptr() == a.o_proj.weight.data_ptr()
    assert packed.addresses() != before and packed.epoch > epoch

    # another compute dtype: new buffers, cast copies of everything
    packed.refresh(model, torch.bfloat16)
    w = packed.layers[1]
    assert all(t.dtype == torch.bfloat16 for pair in w.values() for t in pair if t is not None)
    assert torch.equal(w["o"][0], a.o_proj.weight.bfloat16())
    assert torch.equal(w["qkv"][1], torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]).bfloat16())
    assert w["o"][0].data_ptr() != a.o_proj.weight.data_ptr()


def test_fused_path_with_biases_matches_sdpa_path_and_trainer():
    _, tok = load_model("tiny")
    model = _qwen2()
    prompts = [tok.encode(t) for t in TEXTS] * 2
    fused = Engine(model, tok, **KW).generate(prompts, SAMPLE, seed=3)
    sdpa = Engine(model, tok, **{**KW, "attention": "sdpa"}).generate(prompts, SAMPLE, seed=3)
    assert [o.token_ids for o in fused] == [o.token_ids for o in sdpa]
    assert len({tuple(o.token_ids) for o in fused}) > 1
    for f, s in zip(fused, sdpa, strict=True):
        torch.testing.assert_close(torch.tensor(f.logprobs), torch.tensor(s.logprobs), atol=1e-5, rtol=0)
        ids = torch.tensor([f.prompt_ids + f.token_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(f.prompt_ids) - 1 : -1].float()
        ref = logits.log_softmax(-1).gather(-1, torch.tensor(f.token_ids)[:, None])[:, 0]
        torch.testing.assert_close(torch.tensor(f.logprobs), ref, atol=1e-5, rtol=0)


def test_updates_are_seen_and_buffers_move_only_when_they_must(tiny):
    model, tok = tiny
    prompts = [tok.encode(t) for t in TEXTS]
    engine = Engine(model, tok, **KW)
    first = _tokens(engine, prompts)
    cache, packed = engine.cache, engine.runner.packed
    addresses, graph_key = packed.addresses(), fingerprint(engine.runner, cache)

    _nudge(model, seed=1, scale=0.3)
    updated = _tokens(engine, prompts)
    assert updated != first
    assert updated == _tokens(Engine(model, tok, **KW), prompts)
    # refreshed in place: the captured graphs (which read these addresses) would stay valid
    assert packed.addresses() == addresses and fingerprint(engine.runner, cache) == graph_key

    down = model.model.layers[0].mlp.down_proj  # float32 = the compute dtype: aliased, not copied
    down.weight = torch.nn.Parameter(torch.randn_like(down.weight) * 0.2)
    replaced = _tokens(engine, prompts)
    assert replaced != updated
    assert replaced == _tokens(Engine(model, tok, **KW), prompts)
    assert packed.layers[0]["down"][0].data_ptr() == down.weight.data_ptr()
    assert packed.addresses() != addresses and fingerprint(engine.runner, cache) != graph_key


def test_autocast_fused_path_equals_fresh_engines_across_updates(tiny):
    model, tok = tiny  # float32 parameters, as in the trainer
    prompts = [tok.encode(t) for t in TEXTS]
    half = dict(KW, autocast=torch.float16)  # the trainer's bf16 autocast, in the interpreter's float16
    engine = Engine(model, tok, **KW)  # first without autocast: then the compute dtype changes
    assert _tokens(engine, prompts) == _tokens(Engine(model, tok, **KW), prompts)
    assert engine.runner.packed.layers[0]["o"][0].dtype == torch.float32
    engine.autocast = torch.float16
    outputs, addresses = [], None
    for call in range(2):
        got = _tokens(engine, prompts)
        assert got == _tokens(Engine(model, tok, **half), prompts), f"call {call}"
        packed = engine.runner.packed
        assert packed.dtype == torch.float16 and packed.layers[0]["o"][0].dtype == torch.float16
        assert addresses is None or packed.addresses() == addresses  # in-place refreshes only
        addresses = packed.addresses()
        outputs.append(got)
        _nudge(model, seed=call, scale=0.2)
    assert outputs[0] != outputs[1]  # the update changed what was generated


def test_projections_mixing_biases_are_refused():
    from ponder.rollout.engine.model import unsupported_reason

    model = _qwen2()
    assert unsupported_reason(model) is None
    model.model.layers[1].self_attn.k_proj.bias = None  # q and v keep theirs: cannot be packed as one GEMM
    assert "qkv" in unsupported_reason(model)


@pytest.mark.parametrize("attention", ["sdpa", "triton"])
def test_writes_behind_the_version_counters_are_seen(tiny, attention):
    """A fused AdamW step and `p.data.copy_` write the weights without bumping their version counters;
    the next generation (prefix cache, packed weights) must still use the new weights."""
    model, tok = tiny
    prompts = [tok.encode(t) for t in TEXTS]
    kw = {**KW, "attention": attention}
    engine = Engine(model, tok, **kw)
    first = _tokens(engine, prompts)
    versions = [p._version for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=0.05, fused=True)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    assert [p._version for p in model.parameters()] == versions  # the counters did not move
    stepped = _tokens(engine, prompts)
    assert stepped != first
    assert stepped == _tokens(Engine(model, tok, **kw), prompts)
    gen = torch.Generator().manual_seed(5)
    for p in model.parameters():
        p.data.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    copied = _tokens(engine, prompts)
    assert copied != stepped
    assert copied == _tokens(Engine(model, tok, **kw), prompts)
