"""Block bookkeeping for the paged KV cache: a free list, reference counts and group forks.

A block holds `block_size` consecutive tokens of one sequence. The G samples of a prompt share the prompt's
full blocks (ref count G); each sample owns its partially filled last block, because it is the only block
they will write to. That is copy-on-write decided once at fork time instead of on every write, so the decode
path never checks ref counts.
"""

from __future__ import annotations

from collections import deque


def blocks_for(num_tokens: int, block_size: int) -> int:
    """Blocks needed to hold `num_tokens` tokens."""
    return -(-num_tokens // block_size)


class BlockManager:
    """Allocates block ids; knows nothing about tensors (the `KVCache` holds those)."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        if num_blocks <= 0 or block_size <= 0:
            raise ValueError(f"num_blocks={num_blocks} and block_size={block_size} must be positive")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.ref_counts = [0] * num_blocks
        self.free: deque[int] = deque(range(num_blocks))

    @property
    def num_free(self) -> int:
        return len(self.free)

    def allocate(self, n: int) -> list[int]:
        """`n` fresh blocks with ref count 1; raises when fewer are free (callers check `num_free`)."""
        if n > len(self.free):
            raise RuntimeError(f"asked for {n} blocks but only {len(self.free)} are free")
        blocks = [self.free.popleft() for _ in range(n)]
        for b in blocks:
            self.ref_counts[b] = 1
        return blocks

    def release(self, table: list[int]) -> None:
        """Drop one reference to each block; blocks nobody references go back on the free list."""
        for b in table:
            if self.ref_counts[b] <= 0:
                raise RuntimeError(f"block {b} released more often than referenced")
            self.ref_counts[b] -= 1
            if self.ref_counts[b] == 0:
                self.free.append(b)

    def fork_cost(self, num_tokens: int, copies: int) -> int:
        """Blocks for `copies` samples of a `num_tokens` prompt: the shared ones + private tails."""
        partial = num_tokens % self.block_size != 0
        return blocks_for(num_tokens, self.block_size) + (copies - 1) * partial

    def fork(self, table: list[int], num_tokens: int) -> tuple[list[int], tuple[int, int] | None]:
        """A new table sharing `table`'s full blocks; a partial last block gets a private copy.

        Returns the new table and the (src, dst) block pair whose contents the caller must copy once the
        source block has been written, or None when every block is full.
        """
        full = num_tokens // self.block_size
        for b in table[:full]:
            self.ref_counts[b] += 1
        if full == len(table):
            return list(table), None
        (tail,) = self.allocate(1)
        return table[:full] + [tail], (table[full], tail)
