"""The engine loop: `Engine.generate` implements `rollout.base.Generator` over a paged KV cache.

    engine = Engine(model, tokenizer, num_blocks=512, block_size=16, max_batch=64)
    outs = engine.generate(prompt_ids, SamplingConfig(temperature=1.0, max_new_tokens=64), seed=0)
    outs[0].token_ids, outs[0].logprobs, engine.stats

The engine reads the model's parameters on every call (no copy), so after an optimizer step the next
`generate` samples from the new policy. Identical prompts in one call (a GRPO group) are prefilled once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from ponder.config import SamplingConfig
from ponder.rollout.base import Completion, stop_ids
from ponder.rollout.engine.block_manager import BlockManager
from ponder.rollout.engine.kv_cache import KVCache
from ponder.rollout.engine.model import AttnMeta, PagedLlama
from ponder.rollout.engine.sampler import sample
from ponder.rollout.engine.scheduler import Scheduler, Step
from ponder.rollout.engine.sequence import Sequence


@dataclass
class EngineStats:
    """Counters of the last `generate` call."""

    prefill_tokens: int = 0  # tokens actually run through a prefill forward (recomputes included)
    decode_steps: int = 0  # batched decode forwards
    decode_tokens: int = 0
    preemptions: int = 0


class Engine:
    """Continuous-batching generator for Llama-family HF models (see `model.PagedLlama` for the families)."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        num_blocks: int = 512,
        block_size: int = 16,
        max_batch: int = 64,
    ) -> None:
        if max_batch <= 0:
            raise ValueError(f"max_batch={max_batch} must be positive")
        self.runner = PagedLlama(model)
        self.tokenizer = tokenizer
        self.stop_ids = set(stop_ids(model, tokenizer))
        self.blocks = BlockManager(num_blocks, block_size)
        self.max_batch = max_batch
        self.cache: KVCache | None = None  # allocated on first use, on the model's device and dtype
        self.stats = EngineStats()

    def generate(self, prompt_ids: list[list[int]], sampling: SamplingConfig, seed: int) -> list[Completion]:
        """One completion per prompt (the `Generator` protocol), with per-token `logprobs`."""
        if any(len(p) == 0 for p in prompt_ids):
            raise ValueError("every prompt needs at least one token")
        self.stats = EngineStats()
        cache = self._cache()
        seqs = [
            Sequence(i, list(p), _generator(seed, p, k)) for i, (p, k) in enumerate(_occurrences(prompt_ids))
        ]
        stop_text = _stop_text_check(self.tokenizer, sampling.stop)
        sched = Scheduler(self.blocks, self.max_batch, sampling.max_new_tokens, self.stop_ids, stop_text)
        for group in _groups(seqs, self.max_batch):
            sched.add(group)
        try:
            while not sched.done():
                self._step(sched, sched.schedule(), cache, sampling)
        finally:  # an exception mid-run must not leak blocks into the next call
            for seq in seqs:
                if seq.block_table:
                    self.blocks.release(seq.block_table)
                    seq.block_table = []
        self.stats.preemptions = sched.preemptions
        return [self._output(s) for s in seqs]

    def _step(self, sched: Scheduler, step: Step, cache: KVCache, sampling: SamplingConfig) -> None:
        if step.prefill:
            heads = [g[-1] for g in step.prefill]
            logits_SV = self._no_early_stop(self._forward(cache, heads), heads, sampling)
            self.stats.prefill_tokens += sum(len(s) - s.num_cached for s in heads)
            for src, dst in step.copies:  # the shared prompt blocks are written now; fork the partial tails
                cache.copy_block(src, dst)
            for g, group in enumerate(step.prefill):
                rows_GV = logits_SV[g : g + 1].expand(len(group), -1)
                tokens, logps = sample(rows_GV, [s.generator for s in group], sampling)
                sched.on_prefilled(group, tokens, logps)
        if step.decode:
            logits_BV = self._no_early_stop(self._forward(cache, step.decode), step.decode, sampling)
            self.stats.decode_steps += 1
            self.stats.decode_tokens += len(step.decode)
            tokens, logps = sample(logits_BV, [s.generator for s in step.decode], sampling)
            sched.on_decoded(step.decode, tokens, logps)

    def _no_early_stop(
        self, logits_SV: torch.Tensor, seqs: list[Sequence], sampling: SamplingConfig
    ) -> torch.Tensor:
        """Rows of sequences shorter than `min_new_tokens` cannot sample a stop id (as transformers does;
        their log-probs are then under the masked distribution)."""
        early = [i for i, s in enumerate(seqs) if len(s.completion) < sampling.min_new_tokens]
        if not early:
            return logits_SV
        rows = torch.tensor(early, device=logits_SV.device)[:, None]
        cols = torch.tensor(sorted(self.stop_ids), device=logits_SV.device)[None, :]
        logits_SV = logits_SV.clone()
        logits_SV[rows, cols] = float("-inf")
        return logits_SV

    def _forward(self, cache: KVCache, seqs: list[Sequence]) -> torch.Tensor:
        """Run the uncached tokens of `seqs` through the model; logits (S, V) at each one's last token."""
        bs = self.blocks.block_size
        tokens, positions, slots = [], [], []
        for s in seqs:
            pos = range(s.num_cached, len(s))
            tokens += s.tokens[s.num_cached :]
            positions += pos
            slots += [s.block_table[p // bs] * bs + p % bs for p in pos]
        dev = cache.device
        meta = AttnMeta.build(
            [len(s) - s.num_cached for s in seqs], [len(s) for s in seqs], [s.block_table for s in seqs], dev
        )
        as_tensor = lambda xs: torch.tensor(xs, dtype=torch.long, device=dev)  # noqa: E731
        return self.runner.forward(cache, as_tensor(tokens), as_tensor(positions), as_tensor(slots), meta)

    def _cache(self) -> KVCache:
        r = self.runner
        if self.cache is None or self.cache.dtype != r.dtype or self.cache.device != r.device:
            self.cache = KVCache(
                r.num_layers,
                self.blocks.num_blocks,
                self.blocks.block_size,
                r.num_kv_heads,
                r.head_dim,
                r.dtype,
                r.device,
            )
        return self.cache

    def _output(self, seq: Sequence) -> Completion:
        tokens = seq.completion
        return Completion(
            prompt_ids=seq.prompt,
            token_ids=tokens,
            text=self.tokenizer.decode(tokens, skip_special_tokens=True),
            finished=seq.finished,
            logprobs=list(seq.logprobs),
        )


def _stop_text_check(tokenizer, stops: list[str]):
    """A predicate: does a completion's decoded tail contain a stop string? None when there are none.

    Only the last few tokens are decoded (a stop string is found the step it is completed)."""
    if not stops:
        return None
    window = max(len(s) for s in stops) + 4  # every token decodes to at least one character

    def hit(tokens: list[int]) -> bool:
        text = tokenizer.decode(tokens[-window:], skip_special_tokens=True)
        return any(s in text for s in stops)

    return hit


def _occurrences(prompts: list[list[int]]) -> list[tuple[list[int], int]]:
    """Each prompt with how many identical prompts came before it (the k-th sample of that prompt)."""
    seen: dict[tuple[int, ...], int] = {}
    out = []
    for p in prompts:
        k = seen.get(tuple(p), 0)
        seen[tuple(p)] = k + 1
        out.append((p, k))
    return out


def _generator(seed: int, prompt: list[int], k: int) -> torch.Generator:
    """An RNG keyed by (seed, prompt tokens, sample number): independent of the other prompts in the call,
    of their order, of batching and of preemption."""
    digest = hashlib.blake2b(repr((seed, prompt, k)).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


def _groups(seqs: list[Sequence], max_batch: int) -> list[list[Sequence]]:
    """Sequences with identical prompts, in first-appearance order, in chunks of at most `max_batch`."""
    by_prompt: dict[tuple[int, ...], list[Sequence]] = {}
    for s in seqs:
        by_prompt.setdefault(tuple(s.prompt), []).append(s)
    return [g[i : i + max_batch] for g in by_prompt.values() for i in range(0, len(g), max_batch)]
