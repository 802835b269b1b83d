"""An optional generation backend on vLLM (`rollout.backend = "vllm"`), for users who have it installed.

vLLM runs in this process next to the trainer (`gpu_memory_utilization` leaves room for training). Before
each `generate`, if the trainer's parameters changed since the last sync (`model_fingerprint`: version
counters plus a checksum of sampled bits, so fused optimizers and `p.data` writes are seen too), their
current values are pushed into vLLM's model with its `load_weights`; no checkpoint is written or reloaded.
Log-probs of the sampled tokens come back from vLLM (`logprobs=0`) in ponder's convention, under
softmax(logits / T), which is vLLM's `logprobs_mode = "processed_logprobs"` when no top-k / top-p truncates
(with truncation vLLM reports the truncated sampler's). A vLLM without that option reports the model's
untempered log-probs; they are then kept only at T = 1 (None otherwise, so nothing compares them with the
trainer's tempered ones).
Prompts are token ids; the samples of a GRPO group are requested as `n` samples of one prompt, so vLLM's
prefix cache shares their prompt.

ponder's own engine (`rollout.backend = "ponder"`) needs none of this and is the default; this backend is
not exercised on ponder's CI machines (vLLM is not installed there): its tests drive it through a fake
`vllm` module that checks what is asked of it.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ponder.config import SamplingConfig
from ponder.rollout.base import Completion, stop_ids
from ponder.rollout.engine.model import model_fingerprint


def _vllm():
    try:
        import vllm
    except ImportError as err:
        raise ImportError(
            "rollout.backend = 'vllm' needs the vllm package (pip install vllm); "
            "or use rollout.backend = 'ponder' (ponder's own engine, no extra install)"
        ) from err
    return vllm


class VLLMGenerator:
    """`Generator` on an in-process `vllm.LLM` built from the trainer's model (same weights, synced)."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        model_path: str,
        gpu_memory_utilization: float = 0.3,
        max_model_len: int | None = None,
    ) -> None:
        vllm = _vllm()
        self.vllm = vllm
        self.model = model
        self.tokenizer = tokenizer
        self.stop_ids = stop_ids(model, tokenizer)
        options = dict(
            model=model_path,
            dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            enable_prefix_caching=True,
        )
        try:
            self.llm = vllm.LLM(**options, logprobs_mode="processed_logprobs")
            self.tempered_logprobs = True
        except TypeError:  # a vLLM from before `logprobs_mode`: its log-probs ignore the temperature
            self.llm = vllm.LLM(**options)
            self.tempered_logprobs = False
        self._synced: tuple | None = None

    def sync_weights(self, force: bool = False) -> bool:
        """Push the trainer's weights into vLLM when they changed; True when a sync happened."""
        version = model_fingerprint(self.model)
        if not force and version == self._synced:
            return False
        weights = [(name, p.detach()) for name, p in self.model.state_dict().items()]
        _load_weights(self.llm, weights)
        self._synced = version
        return True

    def generate(self, prompt_ids: list[list[int]], sampling: SamplingConfig, seed: int) -> list[Completion]:
        """One completion per prompt; repeated prompts (a GRPO group) become one request with n samples."""
        self.sync_weights()
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, p in enumerate(prompt_ids):
            groups.setdefault(tuple(p), []).append(i)
        requests, params = [], []
        for g, (prompt, rows) in enumerate(groups.items()):
            requests.append({"prompt_token_ids": list(prompt)})
            params.append(self._params(sampling, len(rows), seed + g))
        outputs = self.llm.generate(requests, sampling_params=params, use_tqdm=False)
        result: list[Completion | None] = [None] * len(prompt_ids)
        for (prompt, rows), out in zip(groups.items(), outputs, strict=True):
            for row, sample in zip(rows, out.outputs, strict=True):
                result[row] = self._completion(list(prompt), sample, sampling.temperature)
        return result  # type: ignore[return-value]

    def _params(self, sampling: SamplingConfig, n: int, seed: int):
        return self.vllm.SamplingParams(
            n=n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else -1,
            max_tokens=sampling.max_new_tokens,
            min_tokens=sampling.min_new_tokens,
            stop=list(sampling.stop) or None,
            stop_token_ids=list(self.stop_ids),
            seed=seed,
            logprobs=0,
        )

    def _completion(self, prompt: list[int], sample, temperature: float) -> Completion:
        tokens = list(sample.token_ids)
        finished = sample.finish_reason == "stop"
        logprobs = None
        usable = self.tempered_logprobs or temperature in (0.0, 1.0)
        if sample.logprobs is not None and usable:
            logprobs = [step[t].logprob for t, step in zip(tokens, sample.logprobs, strict=True)]
        return Completion(prompt, tokens, sample.text, finished, logprobs)


def _load_weights(llm, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
    """vLLM's model `load_weights`, reached the way the installed version exposes it."""
    weights = list(weights)
    if hasattr(llm, "collective_rpc"):  # V1 engine: run on each worker
        llm.collective_rpc(_worker_load_weights, args=(weights,))
        return
    executor = llm.llm_engine.model_executor
    executor.driver_worker.model_runner.model.load_weights(weights)


def _worker_load_weights(worker, weights) -> None:
    worker.model_runner.model.load_weights(weights)
