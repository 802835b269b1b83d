"""Decode steps replayed from CUDA graphs: one graph per batch size on a ladder, inputs in static buffers.

A decode step of a small model launches hundreds of small kernels; on a GPU the launch overhead, not the
math, sets the step time. Each graph is captured once per `DecodeGraphs` (after one eager warm-up that
compiles the Triton kernels) with views of one static int32 buffer as its inputs: token, position, cache
slot and context length of each row, then the block tables. A step copies the rows' values into that
buffer with one host-to-device copy and replays the smallest graph that fits; rows past the real batch
are padding that writes to and reads from the cache's scratch block. The graphs end at the final norm's
hidden states; the lm_head GEMM runs after the replay (the graphs' outputs stay small).

The graphs read the runner's packed weights (`model.PackedWeights`, already in the compute dtype), the
embedding and norm weights, and the cache at the addresses they had at capture: in-place updates are seen
(`PagedLlama.prepare` rewrites the packed weights in place after an optimizer step), reallocation is not (the
engine recaptures when `fingerprint` changes). The forward runs with autocast off, so no weight cast is
captured, and a replay never reads a cast copy that autocast freed when an earlier call's region ended.
"""

from __future__ import annotations

import numpy as np
import torch

from ponder.rollout.engine.kv_cache import KVCache
from ponder.rollout.engine.model import AttnMeta, PagedLlama


def batch_sizes(max_batch: int) -> list[int]:
    """The captured sizes: 1, 2, 4, 8, then every multiple of 16 up to `max_batch` (rounded up)."""
    ladder = [1, 2, 4, 8, *range(16, max_batch + 16, 16)]
    return [s for s in ladder if s < max_batch] + [next(s for s in ladder if s >= max_batch)]


def fingerprint(runner: PagedLlama, cache: KVCache) -> tuple:
    """What a captured graph depends on: parameter, packed-weight and cache addresses, and the dtypes."""
    params = tuple(t.data_ptr() for t in [*runner.hf.parameters(), *runner.hf.buffers()])
    packed = runner.packed
    autocast = (torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda"))
    return params, packed.addresses(), packed.epoch, packed.dtype, id(cache), autocast


class HostInputs:
    """The decode graphs' inputs as the host writes them: two int32 buffers, alternated by step.

    Layout of a buffer for at most `bmax` rows: tokens, positions, cache slots, context lengths, the
    sampler's noise keys (seed low, seed high, step: 32-bit patterns) and each row's advance (1 for a real
    row, 0 for padding: what a sampled graph adds to the position, context length and step after each
    step), `bmax` each, then a (bmax, width) block-table matrix. Rows past a step's batch are padding
    (token 0 at position 0, in the scratch block). With overlapped decode the host fills one buffer while
    the copy out of the other may still be queued behind the running step. Pure host work, run every step:
    it is vectorised except for block-table rows, which are rewritten only when they changed."""

    ROWS = 8  # per-row values before the tables

    def __init__(self, bmax: int, width: int, block_size: int, scratch_block: int, pin: bool) -> None:
        self.bmax, self.width, self.block_size, self.scratch = bmax, width, block_size, scratch_block
        self.tables_at = self.ROWS * bmax
        self.size = self.tables_at + bmax * width
        self.buffers = [torch.zeros(self.size, dtype=torch.int32, pin_memory=pin) for _ in range(2)]
        self.written: list[list[tuple[list[int], int]]] = [[], []]  # (table, its length) per filled row
        for turn in range(2):
            self._pad(turn, 0)

    def fill(
        self,
        turn: int,
        tokens: list[int] | None,
        positions: list[int],
        tables: list[list[int]],
        keys: np.ndarray | None = None,
    ) -> None:
        """Write one step's rows into buffer `turn`: row i feeds `tokens[i]` (None: the tokens are copied
        on the device) at `positions[i]` of the sequence whose block table is `tables[i]`; its cache slot
        and context length follow from those. `keys`: the rows' sampling keys, (3, n) uint32
        (`triton_sampling.key_rows`), when the graph samples."""
        h, bmax, w, bs = self.buffers[turn].numpy(), self.bmax, self.width, self.block_size
        n = len(positions)
        if tokens is not None:
            h[:n] = tokens
        t = h[self.tables_at : self.tables_at + n * w].reshape(n, w)
        written = self.written[turn]  # what this buffer's rows already hold
        for i, row in enumerate(tables):
            if i < len(written) and written[i][0] is row and written[i][1] == len(row):
                continue  # same sequence, no new block since this buffer was last filled
            if len(row) > w:
                raise RuntimeError(f"a sequence holds {len(row)} blocks; the decode graphs allow {w}")
            t[i, : len(row)] = row
        self.written[turn] = [(row, len(row)) for row in tables]
        pos = np.asarray(positions, dtype=np.int32)
        h[bmax : bmax + n] = pos
        h[2 * bmax : 2 * bmax + n] = t[np.arange(n), pos // bs] * bs + pos % bs
        h[3 * bmax : 3 * bmax + n] = pos + 1
        if keys is not None:
            h[4 * bmax : 7 * bmax].reshape(3, bmax)[:, :n] = keys.view(np.int32)
        h[7 * bmax : 7 * bmax + n] = 1  # advance
        self._pad(turn, n)

    def _pad(self, turn: int, start: int) -> None:
        """Rows from `start` on become padding: token 0 at position 0, in the scratch block."""
        h, bmax, w, scratch = self.buffers[turn].numpy(), self.bmax, self.width, self.scratch
        h[start:bmax] = 0  # tokens
        h[bmax + start : 2 * bmax] = 0  # positions
        h[2 * bmax + start : 3 * bmax] = scratch * self.block_size  # slots
        h[3 * bmax + start : 4 * bmax] = 1  # context lengths
        h[4 * bmax : 7 * bmax].reshape(3, bmax)[:, start:] = 0  # keys
        h[7 * bmax + start : 8 * bmax] = 0  # advance: padding stays at position 0 in the scratch block
        h[self.tables_at + start * w : self.tables_at + bmax * w : w] = scratch
        del self.written[turn][start:]  # the padded rows' tables now point at the scratch block


class _Done:
    """A CUDA event stand-in for CPU runs: always complete."""

    def synchronize(self) -> None: ...

    def record(self) -> None: ...


class DecodeGraphs:
    """Captured decode steps of `runner` over `cache` for batch sizes up to `max_batch`: per size the forward
    to the final norm's hidden states, and with `sample` also the whole step (forward, lm_head and the
    fused sampler, greedy and with noise), which leaves the host one launch per step instead of a dozen.

    A sampled step also moves its own inputs on: it records its tokens and log-probs in row `step` of a
    ring of `max_steps` rows, feeds its tokens back as the next inputs and advances each real row's
    position, context length, cache slot (looked up in the row's block table) and sampler step. So
    replaying it k times runs k decode steps with no host work in between (a burst, `run_sampled`),
    provided the block tables already hold the slots of all k positions."""

    def __init__(
        self,
        runner: PagedLlama,
        cache: KVCache,
        max_batch: int,
        max_blocks_per_seq: int,
        splits: int = 1,
        sample: bool = False,
        max_steps: int = 1,
    ) -> None:
        self._setup(runner, cache, max_batch, max_blocks_per_seq, splits, on_gpu=True, max_steps=max_steps)
        bmax = self.bmax
        self._forward(bmax)  # eager warm-up: compiles the kernels, which capture cannot do
        for noise in (False, True) if sample else ():
            self._forward_sample(bmax, noise)
            self.step.zero_()  # the warm-up took a ring row; a burst starts at row 0
        torch.cuda.synchronize()
        pool = None
        for b in reversed(self.sizes):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self.outputs[b] = self._forward(b)
            pool = graph.pool()
            self.graphs[b] = graph
            for noise in (False, True) if sample else ():
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    self.samples[b, noise] = self._forward_sample(b, noise)
                self.sampled[b, noise] = graph
        torch.cuda.synchronize()

    def _setup(
        self,
        runner: PagedLlama,
        cache: KVCache,
        max_batch: int,
        max_blocks_per_seq: int,
        splits: int,
        on_gpu: bool,
        max_steps: int = 1,
    ) -> None:
        """Everything but the captures: host inputs, the device buffer and the graphs' views of it, the
        (empty) graph tables. Without `on_gpu` (CPU stand-ins in tests and host benchmarks) the host buffers
        are not pinned and the copy events are no-ops."""
        self.runner, self.cache, self.splits = runner, cache, splits
        self.sizes = batch_sizes(max_batch)
        self.width = max_blocks_per_seq
        self.fingerprint = fingerprint(runner, cache)
        self.bmax = bmax = self.sizes[-1]
        dev = runner.device
        self.inputs = HostInputs(bmax, self.width, cache.block_size, cache.scratch_block, pin=on_gpu)
        # each host buffer's last copy to the device
        self.copied = [torch.cuda.Event(), torch.cuda.Event()] if on_gpu else [_Done(), _Done()]
        self.turn = 0
        self.buf = torch.zeros(self.inputs.size, dtype=torch.int32, device=dev)
        self.tokens, self.positions, self.slots, self.ctx = self.buf[: 4 * bmax].view(4, bmax)
        self.keys = self.buf[4 * bmax : 7 * bmax].view(3, bmax)
        self.advance = self.buf[7 * bmax : 8 * bmax]
        self.tables = self.buf[self.inputs.tables_at :].view(bmax, self.width)
        self.buf.copy_(self.inputs.buffers[0])
        self.inv_t = torch.ones(1, dtype=torch.float32, device=dev)  # 1 / the sampling temperature
        self.temperature: float | None = None
        # a burst's results: row k holds the tokens / log-probs of its k-th step; `step` is the next row
        self.max_steps = max_steps
        self.ring_tokens = torch.zeros(max_steps, bmax, dtype=torch.long, device=dev)
        self.ring_logps = torch.zeros(max_steps, bmax, dtype=torch.float32, device=dev)
        self.step = torch.zeros(1, dtype=torch.int32, device=dev)
        self.rows = torch.arange(bmax, dtype=torch.int32, device=dev)
        self.zeros = torch.zeros(bmax, dtype=torch.int32, device=dev)
        self.ones = torch.ones(bmax, dtype=torch.int32, device=dev)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.outputs: dict[int, torch.Tensor] = {}
        self.sampled: dict[tuple[int, bool], torch.cuda.CUDAGraph] = {}
        self.samples: dict[tuple[int, bool], tuple[torch.Tensor, torch.Tensor]] = {}

    def _forward(self, b: int) -> torch.Tensor:
        meta = AttnMeta.decode(
            self.tables[:b], self.ctx[:b], self.rows[:b], self.zeros[:b], self.ones[:b], self.splits
        )
        return self.runner.hidden(self.cache, self.tokens[:b], self.positions[:b], self.slots[:b], meta)

    def _forward_sample(self, b: int, noise: bool) -> tuple[torch.Tensor, torch.Tensor]:
        from ponder.rollout.engine.triton_sampling import fused_sample

        logits_BV = self.runner.logits(self._forward(b), packed=True)
        tokens_B, logps_B = fused_sample(logits_BV, self.keys[:, :b].t() if noise else None, self.inv_t)
        self._record_and_advance(b, tokens_B, logps_B)
        return tokens_B, logps_B

    def _record_and_advance(self, b: int, tokens_B: torch.Tensor, logps_B: torch.Tensor) -> None:
        """The tail of a sampled step (captured with it): results into the ring, inputs of the next step.
        Padding rows (advance 0) stay at position 0 in the scratch block."""
        row = self.step.long()
        self.ring_tokens[:, :b].index_copy_(0, row, tokens_B[None].to(self.ring_tokens.dtype))
        self.ring_logps[:, :b].index_copy_(0, row, logps_B[None].float())
        self.step.add_(1)
        inc = self.advance[:b]
        self.tokens[:b].copy_(tokens_B)
        self.positions[:b] += inc
        self.ctx[:b] += inc
        self.keys[2, :b] += inc
        pos, bs = self.positions[:b], self.cache.block_size
        # past the table's width only after a burst's last step, whose next slot nothing uses
        col = (pos // bs).long().clamp_(max=self.width - 1)
        self.slots[:b] = self.tables[:b].gather(1, col[:, None])[:, 0] * bs + pos % bs

    def _load(
        self,
        tokens: list[int] | torch.Tensor,
        positions: list[int],
        tables: list[list[int]],
        keys: np.ndarray | None,
    ) -> tuple[int, int]:
        """Fill the next host buffer and queue its copy (and device-held tokens); (rows, graph size)."""
        n = len(positions)
        b = next(s for s in self.sizes if s >= n)
        self.turn ^= 1
        self.copied[self.turn].synchronize()  # the copy out of this buffer, two steps ago, is done
        on_device = isinstance(tokens, torch.Tensor)
        self.inputs.fill(self.turn, None if on_device else tokens, positions, tables, keys)
        used = self.inputs.tables_at + b * self.width
        self.buf[:used].copy_(self.inputs.buffers[self.turn][:used], non_blocking=True)
        self.copied[self.turn].record()
        if on_device:
            self.tokens[:n].copy_(tokens)
        return n, b

    def run(
        self, tokens: list[int] | torch.Tensor, positions: list[int], tables: list[list[int]]
    ) -> torch.Tensor:
        """Logits (n, V) of one decode step for n rows (n <= the largest captured size): row i feeds
        `tokens[i]` at `positions[i]` of the sequence whose block table is `tables[i]`. `tokens` may be a
        device tensor (the previous step's samples, not yet on the host)."""
        n, b = self._load(tokens, positions, tables, None)
        self.graphs[b].replay()
        return self.runner.logits(self.outputs[b][:n], packed=True)

    def run_sampled(
        self,
        tokens: list[int] | torch.Tensor,
        positions: list[int],
        tables: list[list[int]],
        keys: np.ndarray | None,
        temperature: float,
        steps: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`steps` decode steps (a burst) with the sampling inside the graph (needs `sample=True`): the
        rows' tokens and log-probs, (steps, n), as `triton_sampling.fused_sample` draws them; step j of
        row i feeds the token step j - 1 sampled, at `positions[i] + j`, so `tables[i]` must already hold
        those slots. `keys` ((3, n) uint32, `key_rows`, of the first step) at `temperature`; None: greedy.
        The results are views of the graphs' ring: read (or copy) them before the next call."""
        if not 1 <= steps <= self.max_steps:
            raise ValueError(f"steps={steps}: the graphs were set up for 1..{self.max_steps}")
        n, b = self._load(tokens, positions, tables, keys)
        noise = keys is not None
        if noise and temperature != self.temperature:
            self.inv_t.fill_(1.0 / temperature)
            self.temperature = temperature
        self.step.zero_()
        graph = self.sampled[b, noise]
        for _ in range(steps):
            graph.replay()
        return self.ring_tokens[:steps, :n], self.ring_logps[:steps, :n]
