"""The engine loop: `Engine.generate` implements `rollout.base.Generator` over a paged KV cache.

    engine = Engine(model, tokenizer, num_blocks=512, block_size=16, max_batch=64)
    outs = engine.generate(prompt_ids, SamplingConfig(temperature=1.0, max_new_tokens=64), seed=0)
    outs[0].token_ids, outs[0].logprobs, engine.stats

The engine reads the model's live parameters, so after an optimizer step the next `generate` samples from the
new policy: the CPU path calls the HF modules (no copy); the GPU (Triton) path runs on packed copies in the
compute dtype (`model.PackedWeights`), refreshed in place at the start of a call when the weights changed.
Identical prompts in one call (a GRPO group) are prefilled once.

Prefix caching (`prefix_cache=True`): full blocks of computed K/V stay in the cache, named by a hash chain
over their tokens, and any later prompt that starts with the same blocks reuses them; a prefix shared by all
prompts of a call (chat template + system prompt) is computed once. The cache outlives a call while the
weights are unchanged (a fingerprint of every parameter's identity, storage and in-place version counter)
and is dropped at the start of the first call after they changed, e.g. after an optimizer step.
Chunked prefill: at most `max_prefill_tokens` prompt tokens are computed per step; a longer prompt is
prefilled over several steps while the running sequences keep decoding.
On CUDA, decode steps run in captured graphs with the sampling inside, overlapped with the host's
bookkeeping, up to `decode_steps` of them per launch (a burst; see `_run`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ponder.config import SamplingConfig
from ponder.rollout.base import Completion, stop_ids
from ponder.rollout.engine.block_manager import BlockManager
from ponder.rollout.engine.cuda_graphs import DecodeGraphs, fingerprint
from ponder.rollout.engine.kv_cache import KVCache
from ponder.rollout.engine.model import AttnMeta, PagedLlama, model_fingerprint
from ponder.rollout.engine.sampler import sample, sample_tensors, to_device
from ponder.rollout.engine.scheduler import Scheduler, Step
from ponder.rollout.engine.sequence import Sequence


class _InFlight:
    """A launched decode burst: its sequences, the tokens it sampled ((steps, n), on the device) and their
    host copies. `tokens` is its last step's, which the next burst feeds."""

    def __init__(self, seqs: list[Sequence], tokens: torch.Tensor, logps: torch.Tensor) -> None:
        if tokens.dim() == 1:  # one step
            tokens, logps = tokens[None], logps[None]
        self.seqs, self.steps, self.tokens = seqs, tokens.shape[0], tokens[-1]
        if tokens.is_cuda:
            self.tokens_host = torch.empty(tokens.shape, dtype=tokens.dtype, pin_memory=True)
            self.logps_host = torch.empty(logps.shape, dtype=logps.dtype, pin_memory=True)
            self.tokens_host.copy_(tokens, non_blocking=True)
            self.logps_host.copy_(logps, non_blocking=True)
            self.event: torch.cuda.Event | None = torch.cuda.Event()
            self.event.record()
        else:  # copies, as on CUDA: `tokens` may be a graph's static output, rewritten by the next step
            self.tokens_host, self.logps_host, self.event = tokens.clone(), logps.clone(), None

    def results(self) -> tuple[list[list[int]], list[list[float]]]:
        if self.event is not None:
            self.event.synchronize()
        return self.tokens_host.tolist(), self.logps_host.tolist()


@dataclass
class EngineStats:
    """Counters of the last `generate` call."""

    prefill_tokens: int = 0  # tokens actually run through a prefill forward (recomputes included)
    cached_tokens: int = 0  # tokens of (re)prefills served by the prefix cache instead of computed
    decode_steps: int = 0  # batched decode forwards
    decode_tokens: int = 0
    preemptions: int = 0
    # overlapped decode only: seconds the host spent blocked on a launched step's results (the device is
    # the bottleneck while it waits) and seconds of its own work between those waits (scheduling,
    # launching the next step, applying tokens). wait ~ 0 means the host sets the pace.
    wait_s: float = 0.0
    host_s: float = 0.0
    # host_s by phase: "lookahead" (slots for the next step), "inputs" (graph inputs, replay and the other
    # launches of the forward), "sample" (sampling launches), "handoff" (copies of the samples to the host),
    # "apply" (tokens appended, stops, blocks)
    host_phases: dict[str, float] = field(default_factory=dict)


class Engine:
    """Continuous-batching generator for Llama-family HF models (see `model.PagedLlama` for the families)."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        num_blocks: int = 512,
        block_size: int = 16,
        max_batch: int = 64,
        prefix_cache: bool = True,
        max_prefill_tokens: int = 8192,
        attention: str = "auto",
        cuda_graphs: bool = True,
        autocast: torch.dtype | None = None,
        overlap: bool | str = "auto",
        decode_splits: int = 1,
        graph_sampling: bool = True,
        decode_steps: int = 8,
    ) -> None:
        if max_batch <= 0:
            raise ValueError(f"max_batch={max_batch} must be positive")
        if attention not in ("auto", "sdpa", "triton"):
            raise ValueError(f"attention={attention!r}; expected 'auto', 'sdpa' or 'triton'")
        self.attention = attention  # "auto": the Triton kernel on CUDA when importable, SDPA otherwise
        self.cuda_graphs = cuda_graphs  # decode steps replayed from CUDA graphs (Triton path on CUDA only)
        self.graphs: DecodeGraphs | None = None
        self._call_graphs: DecodeGraphs | None = None  # the graphs valid for the running `generate` call
        self.autocast = autocast  # run (and cache K/V) in this dtype under torch.autocast, like the trainer
        self.overlap = overlap  # overlapped decode ("auto": on CUDA), see `_run`
        if decode_splits < 1 or decode_splits & (decode_splits - 1):
            raise ValueError(f"decode_splits={decode_splits} must be a power of two")
        self.decode_splits = decode_splits  # Triton path: each decode attention's context in this many parts
        if decode_steps < 1:
            raise ValueError(f"decode_steps={decode_steps} must be positive")
        if decode_steps > 1 and not graph_sampling:
            raise ValueError(
                f"decode_steps={decode_steps} needs graph_sampling (the graphs feed their own samples)"
            )
        # CUDA graphs, overlapped decode: decode steps launched per host round trip (a burst, replayed back
        # to back: +49% tok/s at the 0.5B shape on an H100, BENCHMARKS.md), and lm_head and sampling
        # captured with the forward (when sampling has no top-k / top-p / minimum length)
        self.decode_steps = decode_steps
        self.graph_sampling = graph_sampling
        if max_prefill_tokens <= 0:
            raise ValueError(f"max_prefill_tokens={max_prefill_tokens} must be positive")
        self.prefix_cache = prefix_cache
        self.max_prefill_tokens = max_prefill_tokens
        self._prefix_key: tuple | None = None  # (KV cache, weights fingerprint) the cached prefixes belong to
        self.runner = PagedLlama(model)
        self.tokenizer = tokenizer
        self.stop_ids = set(stop_ids(model, tokenizer))
        self.blocks = BlockManager(num_blocks, block_size)
        self.max_batch = max_batch
        self.cache: KVCache | None = None  # allocated on first use, on the model's device and dtype
        self.stats = EngineStats()

    def generate(
        self,
        prompt_ids: list[list[int]],
        sampling: SamplingConfig,
        seed: int,
        max_new_tokens: list[int] | None = None,
        on_token: Callable[[int, int], None] | None = None,
    ) -> list[Completion]:
        """One completion per prompt (the `Generator` protocol), with per-token `logprobs`.

        `max_new_tokens` optionally gives each prompt its own length limit (else `sampling.max_new_tokens`).
        `on_token(index, token_id)`, when given, is called on the host as each token of prompt `index`'s
        completion is accepted, in order (the speculated token of an overlapped step that a stop made
        obsolete is never reported), so streaming sees exactly the returned `token_ids`.
        """
        if any(len(p) == 0 for p in prompt_ids):
            raise ValueError("every prompt needs at least one token")
        if max_new_tokens is not None and (
            len(max_new_tokens) != len(prompt_ids) or min(max_new_tokens, default=1) < 1
        ):
            raise ValueError("max_new_tokens needs one positive limit per prompt")
        with torch.autocast(
            self.runner.device.type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None
        ):
            return self._generate(prompt_ids, sampling, seed, max_new_tokens, on_token)

    def _generate(
        self,
        prompt_ids: list[list[int]],
        sampling: SamplingConfig,
        seed: int,
        max_new_tokens: list[int] | None,
        on_token: Callable[[int, int], None] | None,
    ) -> list[Completion]:
        self.stats = EngineStats()
        cache = self._cache()
        triton = self._kernel(cache) == "triton"
        # one look at the weights per call (a checksum pass and a sync), for both of its users
        weights = model_fingerprint(self.runner.hf) if self.prefix_cache or triton else None
        if self.prefix_cache and (key := (cache, weights)) != self._prefix_key:
            self.blocks.invalidate()  # K/V computed by other weights (or in another cache tensor) are stale
            self._prefix_key = key
        if triton:  # its packed weights, rewritten in place when the weights changed
            self.runner.prepare(cache.dtype, weights)
        seqs = [
            Sequence(i, list(p), _generator(seed, p, k)) for i, (p, k) in enumerate(_occurrences(prompt_ids))
        ]
        for seq, limit in zip(seqs, max_new_tokens or [], strict=False):
            seq.max_new_tokens = limit
        stop_text = _stop_text_check(self.tokenizer, sampling.stop)
        sched = Scheduler(
            self.blocks,
            self.max_batch,
            sampling.max_new_tokens,
            self.stop_ids,
            stop_text,
            self.max_prefill_tokens,
            self.prefix_cache,
            on_token,
        )
        for group in _groups(seqs, self.max_batch):
            sched.add(group)
        # weights cannot change during a call: check the graphs against them once per call, not per step
        # (after `prepare`: its buffers keep their addresses unless they had to be reallocated)
        self._call_graphs = self._graphs(cache)
        if self._call_graphs is not None:
            sched.max_seq_tokens = self._call_graphs.width * self.blocks.block_size
        try:
            self._run(sched, cache, sampling)
        finally:  # an exception mid-run must not leak blocks into the next call
            for seq in seqs:
                if seq.block_table:
                    self.blocks.release(seq.block_table)
                    seq.block_table = []
        self.stats.preemptions = sched.preemptions
        self.stats.cached_tokens = sched.cached_tokens
        return [self._output(s) for s in seqs]

    def _run(self, sched: Scheduler, cache: KVCache, sampling: SamplingConfig) -> None:
        """Schedule and run steps until every sequence is done.

        Overlapped decode (`overlap`): while burst t runs on the GPU, the host applies burst t-1's tokens.
        Burst t+1 is launched before burst t's tokens reach the host: its input tokens are burst t's last
        sampled tokens, still on the device, and every sequence of burst t is assumed to go on. A burst is
        one decode step, or with the sampling in the CUDA graphs up to `decode_steps` of them replayed
        back to back (the graphs feed their own samples forward). A sequence that stopped inside a burst
        (stop id, stop string) thus computes the rest of it and the next burst in vain; those tokens are
        dropped."""
        pending: _InFlight | None = None
        while pending is not None or not sched.done():
            if pending is not None:
                t0 = time.perf_counter()
                nxt = sched.lookahead(pending.seqs, pending.steps, self._burst(sampling, len(pending.seqs)))
                self._phase("lookahead", t0)
                launched = self._launch(cache, nxt[0], sampling, pending, nxt[1]) if nxt and nxt[0] else None
                t1 = time.perf_counter()
                tokens, logps = pending.results()
                t2 = time.perf_counter()
                seqs, live = pending.seqs, None  # live: the rows of `seqs` in the burst's results
                for toks, lps in zip(tokens, logps, strict=True):  # step by step, as they were sampled
                    if any(s.done for s in seqs):  # stopped earlier: their later tokens are dropped
                        live = [i for i, s in zip(live or range(len(seqs)), seqs, strict=True) if not s.done]
                        seqs = [pending.seqs[i] for i in live]
                    if live is not None:
                        toks, lps = [toks[i] for i in live], [lps[i] for i in live]
                    if not seqs:
                        break
                    sched.on_decoded(seqs, toks, lps)
                pending = launched
                self.stats.wait_s += t2 - t1
                self.stats.host_s += (t1 - t0) + (self._phase("apply", t2) - t2)
                continue
            step = sched.schedule()
            if self._overlap(cache) and step.decode and not step.prefill:
                steps = self._burst(sampling, len(step.decode))
                if steps > 1:  # `schedule` gave each a slot for one token; the burst needs `steps`
                    steps = sched.burst(step.decode, steps) or 1
                pending = self._launch(cache, step.decode, sampling, None, steps)
            else:
                self._step(sched, step, cache, sampling)

    def _burst(self, sampling: SamplingConfig, batch: int) -> int:
        """How many decode steps the next launch may run back to back: `decode_steps` when the graphs can
        sample for `sampling` at this batch size, else 1."""
        return self.decode_steps if self._graph_samples(sampling, batch) else 1

    def _graph_samples(self, sampling: SamplingConfig, batch: int) -> bool:
        """Does this call's sampled graph run a decode step of `batch` rows under `sampling`?"""
        graphs = self._call_graphs
        return (
            graphs is not None
            and bool(graphs.sampled)
            and batch <= graphs.bmax
            and _graph_samplable(sampling)
        )

    def _overlap(self, cache: KVCache) -> bool:
        if self.overlap == "auto":
            return cache.device.type == "cuda"
        return bool(self.overlap)

    def _launch(
        self,
        cache: KVCache,
        seqs: list[Sequence],
        sampling: SamplingConfig,
        prev: _InFlight | None,
        steps: int = 1,
    ) -> _InFlight:
        """Enqueue a burst of `steps` decode steps and their sampling; the results are read later
        (`_InFlight.results`). More than one step needs the sampling in the graphs (`_burst`).

        Without `prev` each sequence feeds its last token; with `prev` (speculated), it feeds the last
        token `prev` sampled for it, `prev.steps` positions further."""
        t = time.perf_counter()
        offset = 0 if prev is None else prev.steps
        if prev is None:
            tokens_in: list[int] | torch.Tensor = [s.tokens[-1] for s in seqs]
        elif len(seqs) == len(prev.seqs):  # every row goes on (`seqs` keeps `prev`'s order): no gather
            tokens_in = prev.tokens
        else:
            row = {id(s): i for i, s in enumerate(prev.seqs)}
            idx = to_device(torch.tensor([row[id(s)] for s in seqs], dtype=torch.long), prev.tokens.device)
            tokens_in = prev.tokens.index_select(0, idx)
        if self._graph_samples(sampling, len(seqs)):
            tokens_B, logps_B = self._graph_step(self._call_graphs, seqs, offset, tokens_in, sampling, steps)
            t = self._phase("inputs", t)  # the sampling ran in the graph
        else:
            if steps != 1:
                raise RuntimeError("a burst of decode steps needs the sampling in the CUDA graphs")
            logits_BV = self._decode_forward(cache, seqs, offset, tokens_in)
            t = self._phase("inputs", t)
            logits_BV = self._no_early_stop(logits_BV, seqs, sampling, offset)
            tokens_B, logps_B = sample_tensors(
                logits_BV,
                [s.generator for s in seqs],
                sampling,
                [len(s.tokens) - s.prompt_len + offset for s in seqs],
            )
            t = self._phase("sample", t)
        self.stats.decode_steps += steps
        self.stats.decode_tokens += steps * len(seqs)
        flight = _InFlight(seqs, tokens_B, logps_B)
        self._phase("handoff", t)
        return flight

    def _phase(self, name: str, since: float) -> float:
        """Add the time since `since` to host phase `name` (`EngineStats.host_phases`); returns now."""
        now = time.perf_counter()
        phases = self.stats.host_phases
        phases[name] = phases.get(name, 0.0) + now - since
        return now

    def _graph_step(
        self,
        graphs: DecodeGraphs,
        seqs: list[Sequence],
        offset: int,
        tokens: list[int] | torch.Tensor,
        sampling: SamplingConfig,
        steps: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`steps` decode steps with lm_head and sampling inside the CUDA graph: the same draws as
        `sampler.sample_tensors` on CUDA (Gumbel noise keyed by each sequence's seed and step);
        tokens and log-probs (steps, n)."""
        from ponder.rollout.engine.triton_sampling import key_rows

        positions = [len(s.tokens) - 1 + offset for s in seqs]
        keys = None
        if sampling.temperature > 0:
            made = [len(s.tokens) - s.prompt_len + offset for s in seqs]  # each row's sampler step
            keys = key_rows([s.generator.initial_seed() for s in seqs], made)
        tables = [s.block_table for s in seqs]
        return graphs.run_sampled(tokens, positions, tables, keys, sampling.temperature, steps)

    def _decode_forward(
        self, cache: KVCache, seqs: list[Sequence], offset: int, tokens: list[int] | torch.Tensor
    ) -> torch.Tensor:
        """Logits of one decode step: sequence s feeds `tokens[i]` at position len(s) - 1 + offset."""
        bs = self.blocks.block_size
        positions = [len(s.tokens) - 1 + offset for s in seqs]
        graphs = self._call_graphs
        if graphs is not None and len(seqs) <= graphs.bmax:
            return graphs.run(tokens, positions, [s.block_table for s in seqs])
        slots = [s.block_table[p // bs] * bs + p % bs for s, p in zip(seqs, positions, strict=True)]
        dev = cache.device
        block_q = 0
        if self._kernel(cache) == "triton":
            from ponder.rollout.engine.triton_kernels import block_q_for

            block_q = block_q_for(self.runner.num_heads, self.runner.num_kv_heads, decode=True)
        ctx = [p + 1 for p in positions]
        meta = AttnMeta.build([1] * len(seqs), ctx, [s.block_table for s in seqs], dev, block_q)
        if block_q:
            meta.splits = self.decode_splits
        as_tensor = lambda xs: torch.tensor(xs, dtype=torch.long, device=dev)  # noqa: E731
        tokens_N = tokens.to(dev, torch.long) if isinstance(tokens, torch.Tensor) else as_tensor(tokens)
        return self.runner.forward(cache, tokens_N, as_tensor(positions), as_tensor(slots), meta)

    def _step(self, sched: Scheduler, step: Step, cache: KVCache, sampling: SamplingConfig) -> None:
        if step.prefill:
            # A chunk is its head's first `end` tokens: the forward computes [num_cached, end) of them.
            logits_SV = self._forward(cache, [p.head.chunk(p.end) for p in step.prefill])
            self.stats.prefill_tokens += sum(p.end - p.head.num_cached for p in step.prefill)
            for src, dst in step.copies:  # the shared prompt blocks are written now; fork the partial tails
                cache.copy_block(src, dst)
            last = [i for i, p in enumerate(step.prefill) if p.last]  # only a prompt's last chunk samples
            if last:
                heads = [step.prefill[i].head for i in last]
                logits_LV = self._no_early_stop(logits_SV[last], heads, sampling)
                # one sampling call for every sample of every group finishing its prompt in this step
                groups = [step.prefill[i].group for i in last]
                sizes = torch.tensor([len(g) for g in groups], device=logits_LV.device)
                rows_NV = logits_LV.repeat_interleave(sizes, dim=0)
                seqs = [s for g in groups for s in g]
                tokens, logps = sample(
                    rows_NV, [s.generator for s in seqs], sampling, [s.num_generated for s in seqs]
                )
                start = 0
                for group in groups:
                    end = start + len(group)
                    sched.on_prefilled(group, tokens[start:end], logps[start:end])
                    start = end
            for p in step.prefill:
                if not p.last:
                    sched.on_chunk(p)
        if step.decode:
            logits_BV = self._no_early_stop(self._forward(cache, step.decode), step.decode, sampling)
            self.stats.decode_steps += 1
            self.stats.decode_tokens += len(step.decode)
            tokens, logps = sample(
                logits_BV,
                [s.generator for s in step.decode],
                sampling,
                [s.num_generated for s in step.decode],
            )
            sched.on_decoded(step.decode, tokens, logps)

    def _no_early_stop(
        self, logits_SV: torch.Tensor, seqs: list[Sequence], sampling: SamplingConfig, offset: int = 0
    ) -> torch.Tensor:
        """Rows of sequences shorter than `min_new_tokens` cannot sample a stop id (as transformers does;
        their log-probs are then under the masked distribution)."""
        if sampling.min_new_tokens <= 0 or not self.stop_ids:
            return logits_SV
        early = [i for i, s in enumerate(seqs) if s.num_generated + offset < sampling.min_new_tokens]
        if not early:
            return logits_SV
        rows = to_device(torch.tensor(early, dtype=torch.long), logits_SV.device)[:, None]
        cols = to_device(torch.tensor(sorted(self.stop_ids), dtype=torch.long), logits_SV.device)[None, :]
        logits_SV = logits_SV.clone()
        logits_SV[rows, cols] = float("-inf")
        return logits_SV

    def _forward(self, cache: KVCache, seqs: list[Sequence]) -> torch.Tensor:
        """Run the uncached tokens of `seqs` through the model; logits (S, V) at each one's last token."""
        q_lens = [len(s) - s.num_cached for s in seqs]
        if max(q_lens) == 1:  # one new token each (decode, or a one-token prefill chunk)
            return self._decode_forward(cache, seqs, 0, [s.tokens[-1] for s in seqs])
        bs = self.blocks.block_size
        tokens, positions, slots = [], [], []
        for s in seqs:
            pos = range(s.num_cached, len(s))
            tokens += s.tokens[s.num_cached :]
            positions += pos
            slots += [s.block_table[p // bs] * bs + p % bs for p in pos]
        dev = cache.device
        block_q = 0
        if self._kernel(cache) == "triton":
            from ponder.rollout.engine.triton_kernels import block_q_for

            block_q = block_q_for(self.runner.num_heads, self.runner.num_kv_heads, decode=False)
        meta = AttnMeta.build(q_lens, [len(s) for s in seqs], [s.block_table for s in seqs], dev, block_q)
        as_tensor = lambda xs: torch.tensor(xs, dtype=torch.long, device=dev)  # noqa: E731
        return self.runner.forward(cache, as_tensor(tokens), as_tensor(positions), as_tensor(slots), meta)

    def _kernel(self, cache: KVCache) -> str:
        """The attention implementation for this cache's device."""
        if self.attention != "auto":
            return self.attention
        if cache.device.type != "cuda" or self.runner.head_dim & (self.runner.head_dim - 1):
            return "sdpa"
        try:
            import triton  # noqa: F401
        except ImportError:
            return "sdpa"
        return "triton"

    def _graphs(self, cache: KVCache) -> DecodeGraphs | None:
        """The decode graphs for this cache and these weights, captured on first use; None when off."""
        if not self.cuda_graphs or cache.device.type != "cuda" or self._kernel(cache) != "triton":
            return None
        if self.graphs is None or self.graphs.fingerprint != fingerprint(self.runner, cache):
            self.graphs = None  # free the old graphs' memory before capturing new ones
            width = self.blocks.num_blocks
            max_pos = getattr(self.runner.hf.config, "max_position_embeddings", None)
            if max_pos:
                width = min(width, -(-max_pos // self.blocks.block_size))
            self.graphs = DecodeGraphs(
                self.runner,
                cache,
                self.max_batch,
                width,
                self.decode_splits,
                self.graph_sampling,
                self.decode_steps,
            )
        return self.graphs

    def _cache(self) -> KVCache:
        r = self.runner
        dtype = self.autocast or r.dtype
        if self.cache is None or self.cache.dtype != dtype or self.cache.device != r.device:
            self.cache = None
            self.graphs = None
            self.cache = KVCache(
                r.num_layers,
                self.blocks.num_blocks,
                self.blocks.block_size,
                r.num_kv_heads,
                r.head_dim,
                dtype,
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


def _graph_samplable(sampling: SamplingConfig) -> bool:
    """Can the captured sampler draw for `sampling`? Not with top-k / top-p truncation or a minimum length
    (those mask the logits first, on the eager path)."""
    return sampling.top_k == 0 and sampling.top_p >= 1.0 and sampling.min_new_tokens <= 0


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
