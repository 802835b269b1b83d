"""The vLLM adapter against a fake `vllm` module: what it asks of vLLM and how it maps the answers back."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import pytest
import torch

from ponder.config import SamplingConfig
from ponder.model import load_model


@dataclass
class _Logprob:
    logprob: float


class _FakeLLM:
    instances: list[_FakeLLM] = []

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs
        self.loads: list[dict] = []
        self.calls: list = []
        _FakeLLM.instances.append(self)

    def collective_rpc(self, fn, args=()):
        worker = types.SimpleNamespace(
            model_runner=types.SimpleNamespace(
                model=types.SimpleNamespace(load_weights=lambda w: self.loads.append(dict(w)))
            )
        )
        fn(worker, *args)

    def generate(self, requests, sampling_params, use_tqdm):
        self.calls.append((requests, sampling_params))
        outs = []
        for req, sp in zip(requests, sampling_params, strict=True):
            samples = []
            for k in range(sp.n):
                toks = [req["prompt_token_ids"][0] + k, 2]
                samples.append(
                    types.SimpleNamespace(
                        token_ids=toks,
                        text=f"s{k}",
                        finish_reason="stop" if k == 0 else "length",
                        logprobs=[{t: _Logprob(-0.5 * (j + 1))} for j, t in enumerate(toks)],
                    )
                )
            outs.append(types.SimpleNamespace(outputs=samples))
        return outs


class _Params:
    def __init__(self, **kw) -> None:
        self.__dict__.update(kw)


@pytest.fixture()
def fake_vllm(monkeypatch):
    mod = types.ModuleType("vllm")
    mod.LLM = _FakeLLM
    mod.SamplingParams = _Params
    monkeypatch.setitem(sys.modules, "vllm", mod)
    _FakeLLM.instances.clear()
    return mod


def test_groups_become_n_samples_and_outputs_map_back(fake_vllm):
    from ponder.rollout.vllm import VLLMGenerator

    model, tok = load_model("tiny")
    gen = VLLMGenerator(model, tok, model_path="/some/dir")
    llm = _FakeLLM.instances[0]
    assert llm.kwargs["model"] == "/some/dir" and llm.kwargs["enable_prefix_caching"]
    assert llm.kwargs["logprobs_mode"] == "processed_logprobs"  # under softmax(logits / T), as the trainer
    prompts = [[5, 6], [7], [5, 6], [5, 6]]
    sampling = SamplingConfig(temperature=0.7, top_p=0.9, max_new_tokens=12, stop=["</answer>"])
    outs = gen.generate(prompts, sampling, seed=3)
    requests, params = llm.calls[0]
    assert [r["prompt_token_ids"] for r in requests] == [[5, 6], [7]]
    assert [p.n for p in params] == [3, 1]
    p = params[0]
    assert (p.temperature, p.top_p, p.top_k, p.max_tokens, p.stop, p.logprobs) == (
        0.7,
        0.9,
        -1,
        12,
        ["</answer>"],
        0,
    )
    assert p.stop_token_ids and params[1].seed != params[0].seed
    assert [o.prompt_ids for o in outs] == prompts
    assert [o.token_ids for o in outs] == [[5, 2], [7, 2], [6, 2], [7, 2]]
    assert [o.finished for o in outs] == [True, True, False, False]
    assert outs[0].logprobs == [-0.5, -1.0]


def test_weights_sync_only_after_they_change(fake_vllm):
    from ponder.rollout.vllm import VLLMGenerator

    model, tok = load_model("tiny")
    gen = VLLMGenerator(model, tok, model_path="/m")
    llm = _FakeLLM.instances[0]
    s = SamplingConfig(max_new_tokens=4)
    gen.generate([[1]], s, 0)
    gen.generate([[1]], s, 0)
    assert len(llm.loads) == 1  # unchanged weights are not pushed again
    name, p = next(iter(model.named_parameters()))
    with torch.no_grad():
        p.add_(1.0)  # an optimizer step updates in place
    gen.generate([[1]], s, 0)
    assert len(llm.loads) == 2
    assert torch.equal(llm.loads[1][name], p.detach())
    p.data.mul_(0.5)  # a write the version counter does not see (fused optimizers write like this)
    gen.generate([[1]], s, 0)
    assert len(llm.loads) == 3
    assert torch.equal(llm.loads[2][name], p.detach())


class _OldLLM(_FakeLLM):
    """A vLLM from before `logprobs_mode`: its log-probs are the untempered model's."""

    def __init__(self, **kwargs) -> None:
        if "logprobs_mode" in kwargs:
            raise TypeError("LLM.__init__() got an unexpected keyword argument 'logprobs_mode'")
        super().__init__(**kwargs)


def test_untempered_log_probs_are_kept_only_at_temperature_1(fake_vllm):
    from ponder.rollout.vllm import VLLMGenerator

    fake_vllm.LLM = _OldLLM
    model, tok = load_model("tiny")
    gen = VLLMGenerator(model, tok, model_path="/m")
    assert "logprobs_mode" not in _FakeLLM.instances[-1].kwargs
    warm, plain = (SamplingConfig(temperature=t, max_new_tokens=4) for t in (0.7, 1.0))
    assert gen.generate([[1]], warm, 0)[0].logprobs is None
    assert gen.generate([[1]], plain, 0)[0].logprobs == [-0.5, -1.0]


def test_missing_vllm_is_a_clear_error(monkeypatch):
    from ponder.rollout.vllm import VLLMGenerator

    monkeypatch.setitem(sys.modules, "vllm", None)
    model, tok = load_model("tiny")
    with pytest.raises(ImportError, match="pip install vllm"):
        VLLMGenerator(model, tok, model_path="/m")
