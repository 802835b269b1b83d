"""Group-relative advantage estimators: `ADVANTAGES[name](rewards_N, group_size) -> advantages_N`.

GRPO samples G completions per prompt and uses the other completions of the same prompt as the baseline, so no
value network is needed. Rewards arrive flat, shape (N,) with N = B*G, and the G samples of one prompt are
contiguous: rewards_N.view(B, G)[b] is prompt b's group. Every estimator returns one scalar advantage per
completion, shape (N,), which the loss broadcasts over that completion's tokens (outcome supervision).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ponder.registry import Registry

ADVANTAGES = Registry("advantage estimator")


def _groups(rewards_N: Tensor, group_size: int) -> Tensor:
    """Validate and reshape flat rewards (N,) into groups (B, G); integer/bool rewards become float32."""
    if rewards_N.dim() != 1:
        raise ValueError(f"rewards must be 1-D (N,), got shape {tuple(rewards_N.shape)}")
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    n = rewards_N.numel()
    if n % group_size != 0:
        raise ValueError(
            f"number of rewards N={n} is not a multiple of group_size G={group_size}; "
            "rewards must be B*G values with each prompt's G samples contiguous"
        )
    if not rewards_N.is_floating_point():
        rewards_N = rewards_N.float()
    return rewards_N.view(n // group_size, group_size)


def _constant_groups(r_BG: Tensor) -> Tensor:
    """(B, 1) bool: True where every reward of the group is equal (no learning signal)."""
    return (r_BG == r_BG[:, :1]).all(dim=1, keepdim=True)


@ADVANTAGES.register("grpo")
def grpo_advantages(rewards_N: Tensor, group_size: int, eps: float = 1e-6) -> Tensor:
    """GRPO outcome advantage: A_i = (r_i - mean(r)) / (std(r) + eps) within each group of G.

    Source: DeepSeekMath (Shao et al. 2024), sec. 4.1.2 "Outcome Supervision RL with GRPO".
    The paper does not say which std; we use the unbiased (Bessel-corrected, divide by G-1) sample std, as the
    common implementations (TRL, verl) do. Groups whose rewards are all equal (std 0, or G = 1) get exactly 0
    advantage: we set them explicitly rather than rely on (r - mean) being exactly 0 in floating point, where
    dividing a rounding residue by eps could otherwise produce a spurious non-zero advantage.

    Shapes: rewards_N (N,) with N = B*G -> advantages (N,).
    """
    r_BG = _groups(rewards_N, group_size)
    mean_B1 = r_BG.mean(dim=1, keepdim=True)
    if group_size > 1:
        std_B1 = r_BG.std(dim=1, keepdim=True, unbiased=True)
    else:
        std_B1 = torch.zeros_like(mean_B1)
    adv_BG = (r_BG - mean_B1) / (std_B1 + eps)
    adv_BG = adv_BG.masked_fill(_constant_groups(r_BG), 0.0)
    return adv_BG.reshape(-1)


@ADVANTAGES.register("dr_grpo")
def dr_grpo_advantages(rewards_N: Tensor, group_size: int, eps: float = 1e-6) -> Tensor:
    """Dr. GRPO advantage: A_i = r_i - mean(r) within each group (no division by the std).

    Source: Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical Perspective" (Dr. GRPO), which
    shows the std normaliser up-weights questions that are too easy or too hard (question-level difficulty
    bias). `eps` is unused and kept for a uniform registry signature.

    Shapes: rewards_N (N,) with N = B*G -> advantages (N,).
    """
    r_BG = _groups(rewards_N, group_size)
    adv_BG = r_BG - r_BG.mean(dim=1, keepdim=True)
    adv_BG = adv_BG.masked_fill(_constant_groups(r_BG), 0.0)
    return adv_BG.reshape(-1)


@ADVANTAGES.register("rloo")
def rloo_advantages(rewards_N: Tensor, group_size: int, eps: float = 1e-6) -> Tensor:
    """REINFORCE leave-one-out: A_i = r_i - (1/(G-1)) sum_{j != i} r_j  =  G/(G-1) * (r_i - mean(r)).

    Source: Kool et al. 2019, "Buy 4 REINFORCE Samples, Get a Baseline for Free!"; Ahmadian et al. 2024,
    "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human Feedback" (RLOO).
    The baseline excludes the sample itself, so it is independent of it and the estimator is unbiased.
    Needs G >= 2. `eps` is unused and kept for a uniform registry signature.

    Shapes: rewards_N (N,) with N = B*G -> advantages (N,).
    """
    if group_size < 2:
        raise ValueError(f"rloo needs group_size >= 2 (a leave-one-out baseline), got {group_size}")
    r_BG = _groups(rewards_N, group_size)
    loo_mean_BG = (r_BG.sum(dim=1, keepdim=True) - r_BG) / (group_size - 1)
    adv_BG = r_BG - loo_mean_BG
    adv_BG = adv_BG.masked_fill(_constant_groups(r_BG), 0.0)
    return adv_BG.reshape(-1)


def advantages_with_unscorable(name: str, rewards_N: Tensor, group_size: int) -> Tensor:
    """Advantages when some rewards are NaN (unscorable: a verifier timed out or crashed).

    An unscorable sample is neither right nor wrong: it is left out of its group's baseline and gets
    advantage 0 (the trainer also drops it from the loss). Groups without NaN take the vectorised path;
    a group with NaN is estimated on its scorable members alone (0 when fewer than 2 remain).

    Shapes: rewards_N (N,) with N = B*G -> advantages (N,).
    """
    fn = ADVANTAGES[name]
    r_BG = _groups(rewards_N, group_size)
    bad_BG = torch.isnan(r_BG)
    if not bad_BG.any():
        return fn(rewards_N, group_size)
    adv_BG = torch.zeros_like(r_BG)
    clean_B = ~bad_BG.any(dim=1)
    if clean_B.any():
        adv_BG[clean_B] = fn(r_BG[clean_B].reshape(-1), group_size).view(-1, group_size)
    for b in torch.nonzero(~clean_B).flatten().tolist():
        keep_G = ~bad_BG[b]
        if int(keep_G.sum()) >= 2:
            adv_BG[b, keep_G] = fn(r_BG[b, keep_G], int(keep_G.sum()))
    return adv_BG.reshape(-1)
