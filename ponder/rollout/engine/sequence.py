"""One request's generation state: its tokens, its RNG, its block table and how much of it is cached."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(eq=False)
class Sequence:
    """A prompt and its growing completion.

    `num_cached` counts the leading tokens whose K/V are already in the cache; the rest (one token while
    decoding, all of them on a (re)prefill) are computed in the next forward. `generator` is this sequence's
    own RNG, so its samples do not depend on which other sequences share a batch.
    """

    index: int  # position in the caller's prompt list
    prompt: list[int]
    generator: torch.Generator
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    block_table: list[int] = field(default_factory=list)
    num_cached: int = 0
    finished: bool = False  # stopped at a stop id (False with `done` means truncated)
    done: bool = False

    def __post_init__(self) -> None:
        if not self.tokens:
            self.tokens = list(self.prompt)

    @property
    def completion(self) -> list[int]:
        return self.tokens[len(self.prompt) :]

    def __len__(self) -> int:
        return len(self.tokens)
