"""Continuous batching over a paged KV cache: a waiting queue, chunked prefill, a running set, preemption by
recompute, and when to reuse the prefix cache.

Each `schedule()`:
1. makes room for one more token of every running sequence. When the cache is full it preempts the most
   recently admitted work: prompts still being prefilled first, then running sequences from the back. Their
   blocks are released and they go back to the front of the queue, to be recomputed from their tokens on
   readmission (vLLM's recompute preemption); the prefix cache usually serves most of that again.
2. continues the prompts admitted earlier but not fully prefilled, then (if nothing was preempted) admits
   waiting groups while the batch, the free blocks and the step's prefill budget allow. A prompt longer than
   what is left of `max_prefill_tokens` is prefilled in chunks over several steps while the running
   sequences keep decoding (chunked prefill, as Sarathi-Serve and vLLM do); its samples are drawn when its
   last chunk has been computed.

A group is the samples of one prompt: it is prefilled once and forked (shared full blocks, private partial
tail). On admission its leading full blocks found in the prefix cache are reused, never the block of its
last token: the forward must compute at least that token to have logits to sample from. A group whose next
uncached block is being computed right now by an admitted prompt waits a step rather than compute it a
second time, so a prefix common to all prompts of a call (chat template, system prompt) is computed once.
(vLLM instead registers blocks when they are scheduled; that relies on same-forward reads of K/V written in
that forward, which chunked prefill and a different attention kernel would break.) A full block is
registered in the cache as soon as its K/V are computed, by a prefill chunk or by decoding. The engine runs
the step and reports back through `on_chunk` / `on_prefilled` / `on_decoded`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ponder.rollout.engine.block_manager import BlockManager, blocks_for, chain_hashes
from ponder.rollout.engine.sequence import Sequence


@dataclass
class Prefill:
    """One prefill chunk of a group: the forward computes tokens [num_cached, end) of `head`; the group's
    samples are drawn when `end` reaches the head's length (`last`)."""

    group: list[Sequence]
    end: int

    @property
    def head(self) -> Sequence:
        return self.group[-1]

    @property
    def last(self) -> bool:
        return self.end == len(self.group[-1])


@dataclass
class Step:
    """One engine step: prefill chunks (one forward), block copies to apply after that forward (the forked
    tails of groups whose last chunk it is), and sequences to decode one token each."""

    prefill: list[Prefill] = field(default_factory=list)
    copies: list[tuple[int, int]] = field(default_factory=list)
    decode: list[Sequence] = field(default_factory=list)


@dataclass
class _Admitted:
    """A group whose prompt is being prefilled, and the fork copies due once its last block is written."""

    group: list[Sequence]
    copies: list[tuple[int, int]]


class Scheduler:
    """Owns the sequences' lifecycle and their blocks; never touches tensors."""

    def __init__(
        self,
        blocks: BlockManager,
        max_batch: int,
        max_new_tokens: int,
        stop_ids: set[int],
        stop_text: Callable[[list[int]], bool] | None = None,
        max_prefill_tokens: int = 8192,
        prefix_cache: bool = False,
        on_token: Callable[[int, int], None] | None = None,
    ) -> None:
        if max_prefill_tokens <= 0:
            raise ValueError(f"max_prefill_tokens={max_prefill_tokens} must be positive")
        self.blocks = blocks
        self.max_batch = max_batch
        self.max_new_tokens = max_new_tokens
        self.stop_ids = stop_ids
        self.stop_text = stop_text  # True when a completion ends with a stop string
        self.max_prefill_tokens = max_prefill_tokens
        self.prefix_cache = prefix_cache
        self.on_token = on_token  # (seq.index, token) for every accepted token: streaming
        self.waiting: deque[list[Sequence]] = deque()
        self.prefilling: list[_Admitted] = []  # in admission order
        self.running: list[Sequence] = []  # in admission order: the last one is preempted first
        self.preemptions = 0
        self.cached_tokens = 0  # tokens of admitted (re)prefills found in the prefix cache
        self.max_seq_tokens: int | None = None  # the most positions one sequence's slots may cover

    def add(self, group: list[Sequence]) -> None:
        """Queue the samples of one prompt (identical tokens); at most `max_batch` of them."""
        if not 0 < len(group) <= self.max_batch:
            raise ValueError(
                f"a group has {len(group)} sequences; it must have 1..max_batch={self.max_batch}"
            )
        self.waiting.append(group)

    def done(self) -> bool:
        return not self.waiting and not self.prefilling and not self.running

    def schedule(self) -> Step:
        step = Step()
        preempted = self._reserve_decode_slots()
        step.decode = list(self.running)
        budget = self.max_prefill_tokens
        for admitted in self.prefilling:
            budget = self._chunk(step, admitted, budget)
        if not preempted:
            self._admit(step, budget)
        return step

    def _reserve_decode_slots(self) -> bool:
        """Give every running sequence a slot for its next token, preempting the latest work when full."""
        preempted = False
        i = 0
        while i < len(self.running):
            seq = self.running[i]
            if len(seq.block_table) < blocks_for(len(seq), self.blocks.block_size):
                while self.blocks.num_free == 0 and (self.prefilling or self.running[-1] is not seq):
                    self._preempt(self.prefilling.pop().group if self.prefilling else [self.running.pop()])
                    preempted = True
                if self.blocks.num_free == 0:  # `seq` is now the most recent one: it yields itself
                    if len(self.running) == 1:
                        raise RuntimeError(
                            f"the KV cache ({self.blocks.num_blocks} blocks) cannot hold one sequence of "
                            f"{len(seq)} tokens; raise num_blocks"
                        )
                    self._preempt([self.running.pop()])
                    return True
                seq.block_table += self.blocks.allocate(1)
            i += 1
        return preempted

    def lookahead(
        self, seqs: list[Sequence], ahead: int = 1, steps: int = 1
    ) -> tuple[list[Sequence], int] | None:
        """The sequences of an in-flight decode burst (`ahead` steps, its tokens not yet applied) that go
        on into the next burst, each given slots for that burst's tokens, and the burst's length: at most
        `steps`, no longer than the longest remaining sequence needs (nor than `max_seq_tokens` allows).
        None when the next burst must not be speculated (a prompt is being prefilled, a waiting group
        could be admitted, or blocks are missing): the caller then applies the in-flight results first
        and schedules normally."""
        if self.prefilling or (self.waiting and len(self.running) < self.max_batch):
            return None
        limit = self.max_new_tokens
        nxt, left, longest = [], 0, 0
        for s in seqs:  # the hot path: one pass, no property calls
            n = len(s.tokens)
            rest = (s.max_new_tokens or limit) - (n - s.prompt_len + ahead)  # tokens still to come
            if s.done or rest <= 0:
                continue
            nxt.append(s)
            left, longest = max(left, rest), max(longest, n)
        if not nxt:
            return nxt, 0
        steps = self._fit(nxt, ahead, min(steps, left), longest)
        return (nxt, steps) if steps else None

    def burst(self, seqs: list[Sequence], steps: int) -> int:
        """Slots for a burst of up to `steps` decode steps of `seqs` (just scheduled, nothing in flight),
        sized as `lookahead` sizes one; its length, or 0 (nothing allocated) when it does not fit."""
        limit = self.max_new_tokens
        left = max((s.max_new_tokens or limit) - (len(s.tokens) - s.prompt_len) for s in seqs)
        return self._fit(seqs, 0, min(steps, left), max(len(s.tokens) for s in seqs))

    def _fit(self, seqs: list[Sequence], ahead: int, steps: int, longest: int) -> int:
        """`steps` capped by `max_seq_tokens` for the longest sequence, its slots reserved; 0 if none fit."""
        if self.max_seq_tokens is not None:
            steps = min(steps, self.max_seq_tokens - (longest + ahead) + 1)
        return steps if steps >= 1 and self.reserve(seqs, ahead, steps) else 0

    def reserve(self, seqs: list[Sequence], ahead: int, steps: int) -> bool:
        """Give each of `seqs` cache slots for the `steps` tokens it feeds next, at positions
        len - 1 + ahead onwards; allocates nothing and returns False when the free blocks do not cover
        them all."""
        bs = self.blocks.block_size
        need = []
        total = 0
        for s in seqs:
            short = -(-(len(s.tokens) + ahead + steps - 1) // bs) - len(s.block_table)
            if short > 0:
                need.append((s, short))
                total += short
        if total > self.blocks.num_free:
            return False
        for s, short in need:
            s.block_table += self.blocks.allocate(short)
        return True

    def _preempt(self, group: list[Sequence]) -> None:
        for seq in group:
            self.blocks.release(seq.block_table)
            seq.block_table, seq.num_cached = [], 0
        self.waiting.appendleft(group)
        self.preemptions += 1

    def _chunk(self, step: Step, admitted: _Admitted, budget: int) -> int:
        """Schedule the next chunk of an admitted prompt within `budget` tokens; returns what is left."""
        head = admitted.group[-1]
        n = min(len(head) - head.num_cached, budget)
        if n > 0:
            step.prefill.append(Prefill(admitted.group, head.num_cached + n))
            if head.num_cached + n == len(head):
                step.copies += admitted.copies
        return budget - n

    def _admit(self, step: Step, budget: int) -> None:
        bs = self.blocks.block_size
        batch = len(self.running) + sum(len(a.group) for a in self.prefilling)
        computing = {h for a in self.prefilling for h in self._uncomputed_hashes(a.group[-1])}
        while self.waiting and budget > 0:
            group = self.waiting[0]
            n = len(group[-1])
            if batch + len(group) > self.max_batch:
                break
            hashes = self._hashes(group[-1], (n - 1) // bs)  # the last token's block is always computed
            hit = self.blocks.lookup(hashes)
            if len(hit) < len(hashes) and hashes[len(hit)] in computing:
                break  # its next block is being computed by an admitted prompt: reuse it in a later step
            need = self.blocks.fork_cost(n, len(group)) - len(hit) + self.blocks.acquire_cost(hit)
            if need > self.blocks.num_free:
                if batch == 0:
                    raise RuntimeError(
                        f"the KV cache ({self.blocks.num_blocks} blocks of {self.blocks.block_size}) cannot "
                        f"hold {len(group)} samples of a {n}-token prompt; raise num_blocks, lower max_batch"
                    )
                break
            self.waiting.popleft()
            admitted = self._allocate(group, hit)
            self.prefilling.append(admitted)
            computing.update(self._uncomputed_hashes(group[-1]))
            budget = self._chunk(step, admitted, budget)
            batch += len(group)

    def _allocate(self, group: list[Sequence], hit: list[int]) -> _Admitted:
        """Blocks for a group: the cached prefix `hit`, fresh blocks for the rest, forks for the samples."""
        head, n = group[-1], len(group[-1])
        table = self.blocks.acquire(hit)
        table += self.blocks.allocate(blocks_for(n, self.blocks.block_size) - len(hit))
        head.block_table = table
        copies = []
        for child in group[:-1]:
            child.block_table, copy = self.blocks.fork(table, n)
            child.block_hashes = list(head.block_hashes)  # same tokens, same chain
            if copy is not None:
                copies.append(copy)
        for seq in group:
            seq.num_cached = len(hit) * self.blocks.block_size
        self.cached_tokens += len(hit) * self.blocks.block_size
        return _Admitted(group, copies)

    def _hashes(self, seq: Sequence, count: int) -> list[bytes]:
        """The hash chain of `seq`'s first `count` full blocks; none without a prefix cache."""
        if not self.prefix_cache:
            return []
        return chain_hashes(seq.tokens, self.blocks.block_size, seq.block_hashes, count)[:count]

    def _uncomputed_hashes(self, seq: Sequence) -> list[bytes]:
        """Hashes of the full blocks of an admitted prompt that its remaining chunks will compute."""
        bs = self.blocks.block_size
        return self._hashes(seq, len(seq) // bs)[seq.num_cached // bs :]

    def _computed(self, seq: Sequence, num_cached: int) -> None:
        """`seq`'s first `num_cached` tokens are in the cache; register the blocks that became full."""
        bs = self.blocks.block_size
        first, full = seq.num_cached // bs, num_cached // bs
        seq.num_cached = num_cached
        if full > first:  # most decode steps fill no block
            hashes = self._hashes(seq, full)
            for i in range(first, len(hashes)):
                self.blocks.register(seq.block_table[i], hashes[i])

    def on_chunk(self, chunk: Prefill) -> None:
        """A non-final prefill chunk was computed."""
        self._computed(chunk.head, chunk.end)

    def on_prefilled(self, group: list[Sequence], tokens: list[int], logps: list[float]) -> None:
        """The group's prompt is cached; each sample got its first token. Survivors join `running`."""
        self.prefilling = [a for a in self.prefilling if a.group is not group]
        self.running += group
        self.on_decoded(group, tokens, logps)

    def on_decoded(self, seqs: list[Sequence], tokens: list[int], logps: list[float]) -> None:
        """Each of `seqs` (running) got one more token; the ones that stopped or reached their limit leave.

        The decode hot path (every running sequence, every step): one loop with no calls in the common
        case (no block became full, no stop)."""
        bs, limit = self.blocks.block_size, self.max_new_tokens
        stop_ids, stop_text, on_token = self.stop_ids, self.stop_text, self.on_token
        ended = []
        for seq, tok, lp in zip(seqs, tokens, logps, strict=True):
            toks = seq.tokens
            n = len(toks)  # all of them are in the cache now
            if n // bs > seq.num_cached // bs:
                self._computed(seq, n)  # a block became full: register it in the prefix cache
            else:
                seq.num_cached = n
            toks.append(tok)
            seq.logprobs.append(lp)
            if on_token is not None:
                on_token(seq.index, tok)
            seq.finished = tok in stop_ids or (stop_text is not None and stop_text(seq.completion))
            if seq.finished or n + 1 - seq.prompt_len >= (seq.max_new_tokens or limit):
                seq.done = True
                self.blocks.release(seq.block_table)
                seq.block_table = []
                ended.append(seq)
        if ended:
            self.running = [s for s in self.running if not s.done]
