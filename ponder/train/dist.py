"""Rank awareness for data parallelism: who am I, how many are we, and reducing metrics across ranks.

Single-process runs see rank 0 of 1 and every function is the identity. Under `torchrun` with an
initialised process group, prompts are sharded by rank (a group's G samples always stay on one rank),
loss normalisers (sequence and token counts) and gradients are summed across ranks, so the update equals
the one a single process would make on the whole batch, and metrics are averaged before logging.
"""

from __future__ import annotations

import os
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


def sum_counts(values: dict[str, int], ranks: Ranks) -> dict[str, int]:
    """Sum integer counts (e.g. sequences and tokens in the batch) across ranks."""
    if ranks.world == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([int(values[k]) for k in keys], dtype=torch.int64)
    torch_dist.all_reduce(t)
    return dict(zip(keys, t.tolist(), strict=True))


def sum_gradients(model: torch.nn.Module, ranks: Ranks) -> None:
    """All-reduce (sum) every parameter's gradient; losses were normalised by global counts already."""
    if ranks.world == 1:
        return
    for p in model.parameters():
        if p.requires_grad:
            if p.grad is None:  # a rank whose batch never touched p still joins the collective
                p.grad = torch.zeros_like(p)
            torch_dist.all_reduce(p.grad)


def init_from_env() -> Ranks:
    """Join the process group when started by `torchrun` (WORLD_SIZE > 1): NCCL on GPUs, gloo on CPUs."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch_dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch_dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return current_ranks()
