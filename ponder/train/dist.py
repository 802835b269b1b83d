"""Rank awareness for data parallelism: who am I, how many are we, and reducing metrics across ranks.

Single-process runs see rank 0 of 1 and every function is the identity. Under `torchrun` with an
initialised process group, prompts are sharded by rank (a group's G samples always stay on one rank) and
metrics are averaged across ranks before logging.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class Ranks:
    """This process's place among the data-parallel workers."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current_ranks() -> Ranks:
    """Rank and world size from torch.distributed when initialised, else a single process."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        return Ranks(torch_dist.get_rank(), torch_dist.get_world_size())
    return Ranks()


def reduce_mean(values: dict[str, float], ranks: Ranks) -> dict[str, float]:
    """Average scalar metrics across ranks (identity for one process)."""
    if ranks.world == 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    torch_dist.all_reduce(t)
    return {k: v / ranks.world for k, v in zip(keys, t.tolist(), strict=True)}


def shard_count(total: int, ranks: Ranks) -> int:
    """How many of `total` prompts per step this rank takes; they must divide evenly."""
    if total % ranks.world:
        raise ValueError(f"grpo.prompts_per_step = {total} must be divisible by the world size {ranks.world}")
    return total // ranks.world
