"""The paged-KV-cache engine against transformers: greedy tokens, log-probs, sharing, scheduling, seeds.

python -m pytest -q tests/test_engine.py
"""

from __future__ import annotations

import pytest
import torch
from conftest import sharpen
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from ponder.config import SamplingConfig
from ponder.model import load_model
from ponder.rollout.base import Completion
from ponder.rollout.engine import Engine
from ponder.rollout.hf import HFGenerator

GREEDY = SamplingConfig(temperature=0, max_new_tokens=24)
SAMPLE = SamplingConfig(temperature=1.0, max_new_tokens=24)
TEXTS = ["2+2=", "hello world, the engine", "abc", "a prompt long enough to fill some blocks: 0123456789"]


def _prompts(tok) -> list[list[int]]:
    return [tok.encode(t) for t in TEXTS]


def _hf_greedy(model, tok, prompt: list[int], sampling: SamplingConfig = GREEDY) -> Completion:
    return HFGenerator(model, tok).generate([prompt], sampling, seed=0)[0]  # one prompt: no padding


def test_greedy_matches_hf_generate(tiny):
    model, tok = tiny
    prompts = _prompts(tok)
    outs = Engine(model, tok, num_blocks=64, block_size=4).generate(prompts, GREEDY, seed=0)
    assert all(isinstance(o, Completion) for o in outs)
    assert len({tuple(o.token_ids) for o in outs}) == len(prompts)  # the check is not vacuous
    for p, o in zip(prompts, outs, strict=True):
        ref = _hf_greedy(model, tok, p)
        assert o.prompt_ids == p
        assert o.token_ids == ref.token_ids
        assert o.finished == ref.finished


def _trainer_logprobs(model, prompt: list[int], completion: list[int], temperature: float) -> torch.Tensor:
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) - 1 : -1].float() / temperature
    return logits.log_softmax(-1).gather(-1, torch.tensor(completion)[:, None])[:, 0]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_equal_trainer_forward(tiny, temperature):
    model, tok = tiny
    prompts = [p for p in _prompts(tok) for _ in range(2)]
    sampling = SamplingConfig(temperature=temperature, top_k=20, max_new_tokens=24)
    outs = Engine(model, tok, num_blocks=64, block_size=4).generate(prompts, sampling, seed=3)
    for o in outs:
        assert isinstance(o, Completion) and len(o.logprobs) == len(o.token_ids)
        ref = _trainer_logprobs(model, o.prompt_ids, o.token_ids, temperature)
        torch.testing.assert_close(torch.tensor(o.logprobs), ref, atol=1e-5, rtol=0)


def test_group_samples_share_one_prefill(tiny):
    model, tok = tiny
    p1, p2 = tok.encode("shared prompt number one!"), tok.encode("0123456789abcdef")  # 25 and 16 tokens
    engine = Engine(model, tok, num_blocks=64, block_size=8)
    outs = engine.generate([p1] * 4 + [p2] * 4, SAMPLE, seed=0)
    assert engine.stats.prefill_tokens == len(p1) + len(p2)
    assert len({tuple(o.token_ids) for o in outs[:4]}) > 1  # G samples of a group differ
    greedy = engine.generate([p1] * 4 + [p2] * 4, GREEDY, seed=0)
    assert [o.token_ids for o in greedy] == [_hf_greedy(model, tok, p).token_ids for p in [p1] * 4 + [p2] * 4]
    assert engine.blocks.num_free == engine.blocks.num_blocks


def test_no_leak_and_preemption_is_invisible(tiny):
    model, tok = tiny
    prompts = [p for p in _prompts(tok) for _ in range(2)]
    big = Engine(model, tok, num_blocks=256, block_size=4)
    small = Engine(model, tok, num_blocks=24, block_size=4, max_batch=6)
    for sampling in (GREEDY, SAMPLE):
        expected = big.generate(prompts, sampling, seed=1)
        got = small.generate(prompts, sampling, seed=1)
        assert big.stats.preemptions == 0 and small.stats.preemptions > 0
        assert [o.token_ids for o in got] == [o.token_ids for o in expected]
        for engine in (big, small):
            assert engine.blocks.num_free == engine.blocks.num_blocks
            assert all(r == 0 for r in engine.blocks.ref_counts)


def test_cache_too_small_for_one_sequence_raises(tiny):
    model, tok = tiny
    engine = Engine(model, tok, num_blocks=2, block_size=4)
    with pytest.raises(RuntimeError, match="num_blocks"):
        engine.generate([tok.encode("abc")], GREEDY, seed=0)
    assert engine.blocks.num_free == 2


def test_seeds_reproducible_and_independent_of_batch(tiny):
    model, tok = tiny
    p1, p2 = _prompts(tok)[:2]
    engine = Engine(model, tok, num_blocks=128, block_size=4)
    both = engine.generate([p1] * 3 + [p2] * 3, SAMPLE, seed=7)
    again = engine.generate([p1] * 3 + [p2] * 3, SAMPLE, seed=7)
    other = engine.generate([p1] * 3 + [p2] * 3, SAMPLE, seed=8)
    assert [o.token_ids for o in both] == [o.token_ids for o in again]
    assert [o.token_ids for o in both] != [o.token_ids for o in other]
    alone = Engine(model, tok, num_blocks=128, block_size=4, max_batch=2).generate([p2] * 3, SAMPLE, seed=7)
    assert [o.token_ids for o in alone] == [o.token_ids for o in both[3:]]


def test_stops_at_eos_and_keeps_it(tiny):
    model, tok = tiny
    prompt = _prompts(tok)[1]
    free = Engine(model, tok, num_blocks=64).generate([prompt], GREEDY, seed=0)[0]
    stop = free.token_ids[3]
    cut = free.token_ids.index(stop) + 1
    model.generation_config.eos_token_id = [tok.eos_token_id, stop]
    out = Engine(model, tok, num_blocks=64).generate([prompt], GREEDY, seed=0)[0]
    assert out.finished and out.token_ids == free.token_ids[:cut] and out.token_ids[-1] == stop
    ref = _hf_greedy(model, tok, prompt)
    assert (out.token_ids, out.finished, out.text) == (ref.token_ids, ref.finished, ref.text)
    assert not free.finished and len(free.token_ids) == GREEDY.max_new_tokens


def test_weight_update_is_visible(tiny):
    model, tok = tiny
    prompts = _prompts(tok)
    engine = Engine(model, tok, num_blocks=64, block_size=4)
    before = engine.generate(prompts, GREEDY, seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # in place, as an optimizer step does
        for p in model.model.layers[0].parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.5)
    after = engine.generate(prompts, GREEDY, seed=0)
    assert [o.token_ids for o in after] != [o.token_ids for o in before]
    assert [o.token_ids for o in after] == [_hf_greedy(model, tok, p).token_ids for p in prompts]


_COMMON = dict(
    vocab_size=260, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False, eos_token_id=3,
    pad_token_id=0,
)  # fmt: skip


def _family(name: str):
    common = _COMMON
    if name == "qwen2":  # q/k/v biases, untied lm_head
        return Qwen2ForCausalLM(Qwen2Config(**common, rope_theta=1e6))
    if name == "mistral":  # no sliding window (Mistral >= v0.2)
        return MistralForCausalLM(MistralConfig(**common, sliding_window=None))
    return Qwen3ForCausalLM(Qwen3Config(**common, head_dim=32))  # q/k norm, head_dim != hidden / heads


@pytest.mark.parametrize("attention", ["sdpa", "triton"])  # triton: the GPU kernels, interpreted on CPU
@pytest.mark.parametrize("family", ["qwen2", "qwen3", "mistral"])
def test_other_families_match_hf(family, attention):
    _, tok = load_model("tiny")
    torch.manual_seed(0)
    model = sharpen(_family(family).eval(), std=0.3)
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = 3, 0
    prompts = _prompts(tok)
    engine = Engine(model, tok, num_blocks=64, block_size=4, attention=attention)
    outs = engine.generate(prompts, GREEDY, seed=0)
    assert len({tuple(o.token_ids) for o in outs}) > 1
    assert [o.token_ids for o in outs] == [_hf_greedy(model, tok, p).token_ids for p in prompts]


def test_stop_strings_and_min_new_tokens_match_hf(tiny):
    model, tok = tiny
    prompts = _prompts(tok)
    plain = [_hf_greedy(model, tok, p) for p in prompts]
    # A stop string taken from the middle of each greedy output must end that output right after it.
    for p, ref in zip(prompts, plain, strict=True):
        text = ref.text
        if len(text) < 8:
            continue
        stop = text[3:5]
        sampling = SamplingConfig(temperature=0, max_new_tokens=24, stop=[stop])
        eng = Engine(model, tok, num_blocks=64, block_size=4).generate([p], sampling, seed=0)[0]
        hf = _hf_greedy(model, tok, p, sampling)
        assert eng.token_ids == hf.token_ids and eng.finished and hf.finished
        assert eng.text.endswith(stop) and len(eng.token_ids) < len(ref.token_ids)
    # min_new_tokens: no stop id before it, on both backends.
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    with torch.no_grad():
        model.lm_head.weight[eos] += 50.0  # make stopping the greedy choice at every step
    short = _hf_greedy(model, tok, prompts[0])
    assert short.token_ids == [eos]
    sampling = SamplingConfig(temperature=0, max_new_tokens=12, min_new_tokens=5)
    eng = Engine(model, tok, num_blocks=64, block_size=4).generate([prompts[0]], sampling, seed=0)[0]
    hf = _hf_greedy(model, tok, prompts[0], sampling)
    assert eng.token_ids == hf.token_ids
    assert len(eng.token_ids) > 5 and eos not in eng.token_ids[:5]


def test_unsupported_architectures_are_named():
    from ponder.rollout.engine.model import unsupported_reason

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=260))
    assert "gpt2" in unsupported_reason(gpt2)
    with pytest.raises(ValueError, match="gpt2"):
        Engine(gpt2, load_model("tiny")[1])
    windowed = MistralForCausalLM(MistralConfig(**_COMMON, sliding_window=16))
    assert "sliding-window" in unsupported_reason(windowed)
    assert unsupported_reason(_family("qwen3")) is None


@pytest.mark.parametrize("overlap", [False, True])  # True: the GPU's overlapped decode, run on the CPU
def test_on_token_reports_exactly_the_returned_tokens(tiny, overlap):
    model, tok = tiny
    prompts = [p for p in _prompts(tok) for _ in range(2)]
    limits = [24, 24, 7, 24, 24, 24, 24, 2]
    # a small cache: preemption recomputes sequences, which must not report their tokens twice
    kw = dict(num_blocks=24, block_size=4, max_batch=6, overlap=overlap)
    free = Engine(model, tok, **kw).generate(prompts, SAMPLE, seed=3)
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=24, stop=[free[1].text[5:7]])  # one stops early
    plain = Engine(model, tok, **kw).generate(prompts, sampling, seed=3, max_new_tokens=limits)
    engine = Engine(model, tok, **kw)
    seen: list[list[int]] = [[] for _ in prompts]
    outs = engine.generate(
        prompts, sampling, seed=3, max_new_tokens=limits, on_token=lambda i, t: seen[i].append(t)
    )
    assert seen == [o.token_ids for o in outs] == [o.token_ids for o in plain]
    assert engine.stats.preemptions > 0 and any(o.finished for o in outs)  # both paths were exercised
