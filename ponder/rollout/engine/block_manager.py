"""Block bookkeeping for the paged KV cache: a free list, reference counts, group forks and a prefix cache.

A block holds `block_size` consecutive tokens of one sequence. The G samples of a prompt share the prompt's
full blocks (ref count G); each sample owns its partially filled last block, because it is the only block
they will write to. That is copy-on-write decided once at fork time instead of on every write, so the decode
path never checks ref counts.

Prefix cache (vLLM's automatic prefix caching, SGLang's radix cache flattened to a hash chain): a full block
whose K/V are computed is registered under the hash of (previous block's hash, its token ids), so the hash
names the whole prefix up to and including that block. A later sequence whose leading blocks hash the same
reuses them (`lookup` + `acquire`). A registered block whose ref count drops to 0 is not freed but parked in
an LRU pool of evictable blocks; `allocate` takes never-registered free blocks first, then evicts the least
recently used cached ones. `num_free` counts both, since both can be handed out. `invalidate` forgets every
hash (the engine calls it when the model's weights changed, which makes the cached K/V stale).
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict, deque
from collections.abc import Sequence as Seq


def blocks_for(num_tokens: int, block_size: int) -> int:
    """Blocks needed to hold `num_tokens` tokens."""
    return -(-num_tokens // block_size)


def chain_hashes(tokens: Seq[int], block_size: int, hashes: list[bytes], count: int) -> list[bytes]:
    """Extend `hashes` (in place) to the chain hashes of the first `count` full blocks of `tokens`.

    hash_i = blake2b(hash_{i-1} || token ids of block i): equal hashes mean equal prefixes (a 128-bit digest,
    not Python's `hash`, so a collision, which would silently serve another prompt's K/V, is not a concern).
    """
    if count * block_size > len(tokens):
        raise ValueError(f"{len(tokens)} tokens hold fewer than {count} full blocks of {block_size}")
    while len(hashes) < count:
        i = len(hashes)
        h = hashlib.blake2b(hashes[-1] if hashes else b"", digest_size=16)
        h.update(array("q", tokens[i * block_size : (i + 1) * block_size]).tobytes())  # 8 bytes a token
        hashes.append(h.digest())
    return hashes


class BlockManager:
    """Allocates block ids; knows nothing about tensors (the `KVCache` holds those)."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        if num_blocks <= 0 or block_size <= 0:
            raise ValueError(f"num_blocks={num_blocks} and block_size={block_size} must be positive")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.ref_counts = [0] * num_blocks
        self.free: deque[int] = deque(range(num_blocks))  # unregistered, ref count 0
        self.evictable: OrderedDict[int, None] = OrderedDict()  # registered, ref count 0; oldest first
        self.block_hash: list[bytes | None] = [None] * num_blocks
        self.by_hash: dict[bytes, int] = {}
        self.evictions = 0  # cached blocks taken back by `allocate` (lifetime counter)

    @property
    def num_free(self) -> int:
        """Blocks `allocate` can hand out: free ones and evictable cached ones."""
        return len(self.free) + len(self.evictable)

    def allocate(self, n: int) -> list[int]:
        """`n` blocks with ref count 1 (free ones first, then evicted LRU cached ones); raises when fewer
        than `n` are available (callers check `num_free`)."""
        if n > self.num_free:
            raise RuntimeError(f"asked for {n} blocks but only {self.num_free} are free")
        blocks = []
        for _ in range(n):
            if self.free:
                b = self.free.popleft()
            else:
                b, _ = self.evictable.popitem(last=False)
                self.evictions += 1
                del self.by_hash[self.block_hash[b]]
                self.block_hash[b] = None
            self.ref_counts[b] = 1
            blocks.append(b)
        return blocks

    def release(self, table: list[int]) -> None:
        """Drop one reference to each block. Unreferenced blocks go back on the free list, or, when they
        are registered, into the evictable pool: a table's tail first, so that its tail is evicted first
        (a later block is worthless once an earlier block of its chain is gone)."""
        for b in reversed(table):
            if self.ref_counts[b] <= 0:
                raise RuntimeError(f"block {b} released more often than referenced")
            self.ref_counts[b] -= 1
            if self.ref_counts[b] == 0:
                if self.block_hash[b] is None:
                    self.free.append(b)
                else:
                    self.evictable[b] = None

    def lookup(self, hashes: list[bytes]) -> list[int]:
        """The cached blocks holding the longest leading run of `hashes`; takes no reference."""
        hit = []
        for h in hashes:
            b = self.by_hash.get(h)
            if b is None:
                break
            hit.append(b)
        return hit

    def acquire(self, blocks: list[int]) -> list[int]:
        """Take a reference to each (cached) block of `blocks`, pulling unreferenced ones out of the pool."""
        for b in blocks:
            if self.ref_counts[b] == 0:
                del self.evictable[b]
            self.ref_counts[b] += 1
        return list(blocks)

    def acquire_cost(self, blocks: list[int]) -> int:
        """How much `acquire(blocks)` lowers `num_free`: the blocks now in the evictable pool."""
        return sum(self.ref_counts[b] == 0 for b in blocks)

    def register(self, block: int, h: bytes) -> None:
        """Mark a referenced, fully computed block as holding the prefix named `h`. When another block already
        holds that prefix (two sequences computed the same content), this one stays unregistered."""
        if self.ref_counts[block] <= 0:
            raise RuntimeError(f"block {block} is registered while unreferenced")
        if self.block_hash[block] is not None:
            if self.block_hash[block] != h:
                raise RuntimeError(f"block {block} is registered under two different prefixes")
            return
        if h not in self.by_hash:
            self.by_hash[h] = block
            self.block_hash[block] = h

    def invalidate(self) -> None:
        """Forget every cached prefix (the K/V were computed by other weights); cached blocks become free."""
        for b in self.evictable:
            self.free.append(b)
        self.evictable.clear()
        self.by_hash.clear()
        self.block_hash = [None] * self.num_blocks

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
