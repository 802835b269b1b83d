"""Continuous batching over a paged KV cache: a waiting queue, a running set, preemption by recompute.

Each `schedule()` first makes room for one more token of every running sequence; when the cache is full it
preempts the most recently admitted sequence (its blocks are freed, it goes back to the front of the queue
and is recomputed from its tokens on readmission, like vLLM's recompute preemption). If nothing was
preempted it then admits waiting groups while the batch and the free blocks allow. A group is the samples
of one prompt: it is prefilled once and forked (shared full blocks, private partial tail). The engine runs
the step and reports the sampled tokens back through `on_prefilled` / `on_decoded`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ponder.rollout.engine.block_manager import BlockManager, blocks_for
from ponder.rollout.engine.sequence import Sequence


@dataclass
class Step:
    """One engine step: groups to prefill (the forward runs on `group[-1]`), block copies to apply after
    that prefill, and sequences to decode one token each."""

    prefill: list[list[Sequence]] = field(default_factory=list)
    copies: list[tuple[int, int]] = field(default_factory=list)
    decode: list[Sequence] = field(default_factory=list)


class Scheduler:
    """Owns the sequences' lifecycle and their blocks; never touches tensors."""

    def __init__(
        self,
        blocks: BlockManager,
        max_batch: int,
        max_new_tokens: int,
        stop_ids: set[int],
        stop_text: Callable[[list[int]], bool] | None = None,
    ) -> None:
        self.blocks = blocks
        self.max_batch = max_batch
        self.max_new_tokens = max_new_tokens
        self.stop_ids = stop_ids
        self.stop_text = stop_text  # True when a completion ends with a stop string
        self.waiting: deque[list[Sequence]] = deque()
        self.running: list[Sequence] = []  # in admission order: the last one is preempted first
        self.preemptions = 0

    def add(self, group: list[Sequence]) -> None:
        """Queue the samples of one prompt (identical tokens); at most `max_batch` of them."""
        if not 0 < len(group) <= self.max_batch:
            raise ValueError(
                f"a group has {len(group)} sequences; it must have 1..max_batch={self.max_batch}"
            )
        self.waiting.append(group)

    def done(self) -> bool:
        return not self.waiting and not self.running

    def schedule(self) -> Step:
        step = Step()
        preempted = self._reserve_decode_slots()
        step.decode = list(self.running)
        if not preempted:
            self._admit(step)
        return step

    def _reserve_decode_slots(self) -> bool:
        """Give every running sequence a slot for its next token, preempting from the back when full."""
        preempted = False
        i = 0
        while i < len(self.running):
            seq = self.running[i]
            if len(seq.block_table) < blocks_for(len(seq), self.blocks.block_size):
                while self.blocks.num_free == 0 and self.running[-1] is not seq:
                    self._preempt(self.running.pop())
                    preempted = True
                if self.blocks.num_free == 0:  # `seq` is now the most recent one: it yields itself
                    if len(self.running) == 1:
                        raise RuntimeError(
                            f"the KV cache ({self.blocks.num_blocks} blocks) cannot hold one sequence of "
                            f"{len(seq)} tokens; raise num_blocks"
                        )
                    self._preempt(self.running.pop())
                    return True
                seq.block_table += self.blocks.allocate(1)
            i += 1
        return preempted

    def _preempt(self, seq: Sequence) -> None:
        self.blocks.release(seq.block_table)
        seq.block_table, seq.num_cached = [], 0
        self.waiting.appendleft([seq])
        self.preemptions += 1

    def _admit(self, step: Step) -> None:
        batch = len(self.running)
        while self.waiting:
            group = self.waiting[0]
            n = len(group[0])
            if batch + len(group) > self.max_batch:
                break
            if self.blocks.fork_cost(n, len(group)) > self.blocks.num_free:
                if batch == 0:
                    raise RuntimeError(
                        f"the KV cache ({self.blocks.num_blocks} blocks of {self.blocks.block_size}) cannot "
                        f"hold {len(group)} samples of a {n}-token prompt; raise num_blocks, lower max_batch"
                    )
                break
            self.waiting.popleft()
            parent = self.blocks.allocate(blocks_for(n, self.blocks.block_size))
            group[-1].block_table = parent
            for child in group[:-1]:
                child.block_table, copy = self.blocks.fork(parent, n)
                if copy is not None:
                    step.copies.append(copy)
            step.prefill.append(group)
            batch += len(group)

    def on_prefilled(self, group: list[Sequence], tokens: list[int], logps: list[float]) -> None:
        """The group's prompt is cached; each sample got its first token. Survivors join `running`."""
        for seq, tok, lp in zip(group, tokens, logps, strict=True):
            seq.num_cached = len(seq)
            self.running.append(seq)
            self._append(seq, tok, lp)

    def on_decoded(self, seqs: list[Sequence], tokens: list[int], logps: list[float]) -> None:
        for seq, tok, lp in zip(seqs, tokens, logps, strict=True):
            seq.num_cached = len(seq)
            self._append(seq, tok, lp)

    def _append(self, seq: Sequence, token: int, logp: float) -> None:
        seq.tokens.append(token)
        seq.logprobs.append(logp)
        seq.finished = token in self.stop_ids or (
            self.stop_text is not None and self.stop_text(seq.completion)
        )
        if seq.finished or len(seq.completion) >= self.max_new_tokens:
            seq.done = True
            self.blocks.release(seq.block_table)
            seq.block_table = []
            self.running.remove(seq)
