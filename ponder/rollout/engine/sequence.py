"""One request's generation state: its tokens, its RNG, its block table and how much of it is cached."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch


@dataclass(eq=False)
class Sequence:
    """A prompt and its growing completion.

    `num_cached` counts the leading tokens whose K/V are already in the cache (computed, or reused from the
    prefix cache); the rest (one token while decoding, all of them or the next chunk on a (re)prefill) are
    computed in the next forward. `generator` is this sequence's own RNG, so its samples do not depend on
    which other sequences share a batch. `block_hashes` memoises the prefix-cache hash chain of its full
    blocks (a function of `tokens` alone, so it survives preemption).
    """

    index: int  # position in the caller's prompt list
    prompt: list[int]
    generator: torch.Generator
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    block_table: list[int] = field(default_factory=list)
    num_cached: int = 0
    block_hashes: list[bytes] = field(default_factory=list)
    finished: bool = False  # stopped at a stop id (False with `done` means truncated)
    done: bool = False
    max_new_tokens: int | None = None  # this request's own limit (None: the call's)

    def __post_init__(self) -> None:
        if not self.tokens:
            self.tokens = list(self.prompt)
        self.prompt_len = len(self.prompt)

    @property
    def completion(self) -> list[int]:
        return self.tokens[len(self.prompt) :]

    @property
    def num_generated(self) -> int:
        """len(completion), without copying it (the hot path asks every step)."""
        return len(self.tokens) - self.prompt_len

    def __len__(self) -> int:
        return len(self.tokens)

    def chunk(self, end: int) -> Sequence:
        """The first `end` tokens as a sequence sharing this one's blocks: a prefill chunk, as the forward
        sees it (it computes tokens [num_cached, len) of what it is given)."""
        if end == len(self.tokens):
            return self
        if not self.num_cached < end < len(self.tokens):
            raise ValueError(f"a chunk must end in ({self.num_cached}, {len(self.tokens)}], not at {end}")
        return replace(self, tokens=self.tokens[:end], logprobs=[], block_hashes=[])
