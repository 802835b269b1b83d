"""Policy-gradient losses for GRPO-style training: clipped surrogate, KL penalty, and loss aggregation.

One objective, three choices that papers disagree on, each a pure function:
- the per-token surrogate: PPO's clipped ratio objective with DAPO's decoupled (eps_low, eps_high) clip range;
- the KL penalty estimator: `ponder.algos.kl.KL_ESTIMATORS` (GRPO puts beta * k3 in the loss, not the reward);
- how per-token losses are averaged into a scalar: `LOSS_AGGREGATIONS` ("grpo", "dapo", "dr_grpo");
- optionally, per-token importance weights against the sampler's log-probs (`truncated_importance_weights`).

Aggregation is micro-batch aware: each function receives one micro-batch's per-token losses plus the totals
of the *full* batch (sequences, completion tokens, max length) and returns that micro-batch's exact share of
the full-batch loss. Summing the returned scalars over micro-batches (i.e. calling `.backward()` on each)
therefore yields exactly the full-batch loss and gradient, with no re-scaling by the number of micro-batches.

Shapes: B sequences in the micro-batch, T completion tokens (padded), V vocabulary.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ponder.algos.kl import KL_ESTIMATORS
from ponder.registry import Registry, get

LOSS_AGGREGATIONS = Registry("loss aggregation")

# Bound on |logp - old_logp| before exp(): keeps the ratio finite (no inf * 0 = nan in backward). At |20| the
# ratio (~4.9e8 or ~2e-9) is far outside any clip range, so only the unclipped branch with A < 0 at a huge
# ratio is affected, whose gradient would explode anyway.
LOG_RATIO_CLAMP = 20.0


def clipped_surrogate(
    logp_BT: Tensor, old_logp_BT: Tensor, adv_B: Tensor, eps_low: float, eps_high: float
) -> tuple[Tensor, Tensor]:
    """Per-token clipped policy-gradient loss: L = -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A).

    rho = exp(logp - old_logp) is the importance ratio of the sampled token. Sources: PPO (Schulman et al.
    2017, eq. 7); GRPO (Shao et al. 2024, eq. 3) applies it per token with a per-sequence advantage; the
    decoupled eps_low / eps_high is DAPO's "clip-higher" (Yu et al. 2025, sec. 3.1). eps_low = eps_high
    recovers PPO/GRPO.

    Returns (loss_BT, clipped_BT). clipped_BT is True where the min picked the clipped term and it differs
    from the unclipped one, i.e. rho > 1 + eps_high with A > 0 or rho < 1 - eps_low with A < 0: exactly the
    tokens whose gradient is zero.

    Shapes: logp_BT, old_logp_BT (B, T); adv_B (B,) broadcast over tokens, or (B, T) per-token
    -> loss_BT (B, T) float, clipped_BT (B, T) bool.
    """
    if eps_low < 0 or eps_high < 0:
        raise ValueError(f"clip ranges must be >= 0, got eps_low={eps_low}, eps_high={eps_high}")
    adv_BT = adv_B.unsqueeze(-1) if adv_B.dim() == 1 else adv_B
    log_ratio_BT = (logp_BT - old_logp_BT).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio_BT = torch.exp(log_ratio_BT)
    unclipped_BT = -ratio_BT * adv_BT
    clipped_loss_BT = -ratio_BT.clamp(1.0 - eps_low, 1.0 + eps_high) * adv_BT
    # -min(x, y) == max(-x, -y); torch.maximum sends the gradient to the chosen branch only.
    loss_BT = torch.maximum(unclipped_BT, clipped_loss_BT)
    clipped_BT = (clipped_loss_BT > unclipped_BT).detach()
    return loss_BT, clipped_BT


def _masked_sum(loss_BT: Tensor, mask_BT: Tensor) -> Tensor:
    return (loss_BT * mask_BT.to(loss_BT.dtype)).sum()


@LOSS_AGGREGATIONS.register("grpo")
def aggregate_grpo(
    loss_BT: Tensor, mask_BT: Tensor, *, total_seqs: int, total_tokens: int, max_len: int
) -> Tensor:
    """Sequence mean, then batch mean: (1/N) sum_b (1/|o_b|) sum_t loss[b,t] * mask[b,t].

    Source: GRPO (Shao et al. 2024, eq. 3: (1/G) sum_i (1/|o_i|) sum_t). N = total_seqs of the full batch,
    so micro-batch shares add up. |o_b| is clamped to >= 1 so an empty completion contributes 0, not nan.
    Known bias (Dr. GRPO, DAPO): 1/|o_b| weights tokens of short answers more than those of long ones.

    Shapes: loss_BT, mask_BT (B, T) -> scalar.
    """
    mask_BT = mask_BT.to(loss_BT.dtype)
    lengths_B = mask_BT.sum(dim=-1).clamp(min=1.0)
    per_seq_B = (loss_BT * mask_BT).sum(dim=-1) / lengths_B
    return per_seq_B.sum() / max(total_seqs, 1)


@LOSS_AGGREGATIONS.register("dapo")
def aggregate_dapo(
    loss_BT: Tensor, mask_BT: Tensor, *, total_seqs: int, total_tokens: int, max_len: int
) -> Tensor:
    """Token-level mean over the full batch: sum_{b,t} loss[b,t] * mask[b,t] / total_tokens.

    Source: DAPO (Yu et al. 2025, sec. 3.3 "Token-Level Policy Gradient Loss"): every token weighs
    the same, so long (e.g. rambling or repetitive) completions are penalised in proportion to their length.
    total_tokens is the number of masked tokens in the full batch (clamped to >= 1).

    Shapes: loss_BT, mask_BT (B, T) -> scalar.
    """
    return _masked_sum(loss_BT, mask_BT) / max(total_tokens, 1)


@LOSS_AGGREGATIONS.register("dr_grpo")
def aggregate_dr_grpo(
    loss_BT: Tensor, mask_BT: Tensor, *, total_seqs: int, total_tokens: int, max_len: int
) -> Tensor:
    """Constant normaliser: sum_{b,t} loss[b,t] * mask[b,t] / (total_seqs * max_len).

    Source: Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training", the Dr. GRPO objective):
    dividing by a constant (the generation budget) instead of |o_i| removes GRPO's length bias.
    max_len is the maximum completion length (the sampling budget), the same for every micro-batch.

    Shapes: loss_BT, mask_BT (B, T) -> scalar.
    """
    return _masked_sum(loss_BT, mask_BT) / max(total_seqs * max_len, 1)


def policy_loss(
    name: str,
    logp_BT: Tensor,
    old_logp_BT: Tensor,
    adv_B: Tensor,
    mask_BT: Tensor,
    *,
    eps_low: float,
    eps_high: float,
    total_seqs: int,
    total_tokens: int,
    max_len: int,
    ref_logp_BT: Tensor | None = None,
    beta: float = 0.0,
    kl: str = "k3",
) -> tuple[Tensor, dict[str, Tensor]]:
    """A micro-batch's share of the GRPO objective: aggregate_name(surrogate_BT + beta * KL_BT, mask_BT).

    Per token: clipped_surrogate(...) + beta * KL_ESTIMATORS[kl](logp, ref_logp) (GRPO, Shao et al. 2024,
    eq. 3: the KL is a loss term, not a reward penalty). Aggregation: LOSS_AGGREGATIONS[name] with the full
    batch's totals, so summing the returned loss over micro-batches gives the full-batch loss.

    Returns (loss, stats); stats are detached sums over masked tokens so the caller can add them across
    micro-batches and ranks and divide once: {"clip_sum": #clipped tokens, "kl_sum": sum of KL (0 when no
    reference is given; computed for monitoring even when beta = 0), "tokens": #masked tokens}.

    Shapes: logp_BT, old_logp_BT, mask_BT, ref_logp_BT (B, T); adv_B (B,) -> scalar loss, scalar stats.
    """
    aggregate = get(LOSS_AGGREGATIONS, name)
    if beta < 0:
        raise ValueError(f"beta (KL coefficient) must be >= 0, got {beta}")
    if beta > 0 and ref_logp_BT is None:
        raise ValueError("beta > 0 needs ref_logp_BT (reference-model log-probs)")
    loss_BT, clipped_BT = clipped_surrogate(logp_BT, old_logp_BT, adv_B, eps_low, eps_high)
    mask_f_BT = mask_BT.to(loss_BT.dtype)
    kl_sum = torch.zeros((), dtype=loss_BT.dtype, device=loss_BT.device)
    if ref_logp_BT is not None:
        kl_BT = get(KL_ESTIMATORS, kl)(logp_BT, ref_logp_BT)
        if beta > 0:
            loss_BT = loss_BT + beta * kl_BT
        kl_sum = (kl_BT.detach() * mask_f_BT).sum()
    loss = aggregate(loss_BT, mask_BT, total_seqs=total_seqs, total_tokens=total_tokens, max_len=max_len)
    stats = {
        "clip_sum": (clipped_BT.to(mask_f_BT.dtype) * mask_f_BT).sum().detach(),
        "kl_sum": kl_sum,
        "tokens": mask_f_BT.sum().detach(),
    }
    return loss, stats


def truncated_importance_weights(old_logp_BT: Tensor, sampler_logp_BT: Tensor, cap: float) -> Tensor:
    """Per-token weights w = min(pi_train(y) / pi_sampler(y), cap), detached.

    The rollout engine and the trainer compute the same policy with different kernels (and in bf16 with
    different rounding), so the tokens were drawn from pi_sampler, not from the pi_train the loss
    differentiates. Multiplying each token's advantage by w corrects for that; capping w bounds the variance.
    Source: truncated importance sampling for the sampler/trainer mismatch (Yao et al. 2025, "Your Efficient
    RL Framework Secretly Brings You Off-Policy RL Training"). old_logp is the trainer's log-prob of the
    policy that sampled (before this step's updates); sampler_logp the engine's, both at the sampling
    temperature.

    Shapes: old_logp_BT, sampler_logp_BT (B, T) -> w_BT (B, T) float32.
    """
    if cap < 1:
        raise ValueError(f"the importance-weight cap must be >= 1, got {cap}")
    log_w_BT = (old_logp_BT.detach().float() - sampler_logp_BT.float()).clamp(max=math.log(cap))
    return torch.exp(log_w_BT)


def sampler_gap(
    old_logp_BT: Tensor, sampler_logp_BT: Tensor, mask_BT: Tensor, cap: float = 0.0
) -> dict[str, Tensor]:
    """How far the sampler's log-probs of the sampled tokens are from the trainer's, as detached sums over
    masked tokens (add them across micro-batches, divide by the token count once): "abs_sum" of
    |sampler - trainer|, "sum" of (sampler - trainer) (a k1 estimate of KL(sampler || trainer)), "max" |Δ|,
    and with a cap, "capped": tokens whose `truncated_importance_weights` hit it.

    Shapes: old_logp_BT, sampler_logp_BT, mask_BT (B, T) -> scalar tensors.
    """
    diff_BT = (sampler_logp_BT.float() - old_logp_BT.detach().float()) * mask_BT
    zero = diff_BT.new_zeros(())
    stats = {
        "abs_sum": diff_BT.abs().sum(),
        "sum": diff_BT.sum(),
        "max": diff_BT.abs().max() if diff_BT.numel() else zero,
    }
    if cap:  # log w = -(sampler - trainer) reaches log(cap)
        stats["capped"] = ((-diff_BT >= math.log(cap) - 1e-6) * mask_BT).sum()
    return stats


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def token_logprobs(logits_BTV: Tensor, tokens_BT: Tensor, temperature: float = 1.0) -> Tensor:
    """log p(token) = z[token] / tau - logsumexp(z / tau), computed in float32.

    The sampler draws from softmax(z / tau), so the ratio and KL must use the same tempered distribution.
    Memory: never materialises a full (B, T, V) log_softmax; for low-precision logits the float32 upcast is
    done one sequence at a time, so the extra peak memory is (T, V) float32, not (B, T, V).

    Shapes: logits_BTV (B, T, V), tokens_BT (B, T) int -> logp_BT (B, T) float32.
    """
    _check_temperature(temperature)
    rows = []
    for logits_TV, tokens_T in zip(_float32_rows(logits_BTV), tokens_BT, strict=True):
        z_TV = logits_TV / temperature if temperature != 1.0 else logits_TV
        picked_T = z_TV.gather(-1, tokens_T.long().unsqueeze(-1)).squeeze(-1)
        rows.append(picked_T - torch.logsumexp(z_TV, dim=-1))
    return torch.stack(rows) if rows else logits_BTV.new_zeros(tokens_BT.shape, dtype=torch.float32)


def entropy_from_logits(logits_BTV: Tensor, temperature: float = 1.0) -> Tensor:
    """Entropy of each token's distribution: H = logsumexp(z) - sum_v softmax(z)_v z_v, in float32.

    Same as -sum_v p_v log p_v but without forming log p; z = logits / temperature. Computed one sequence
    at a time to bound the float32 working memory to (T, V).

    Shapes: logits_BTV (B, T, V) -> H_BT (B, T) float32.
    """
    _check_temperature(temperature)
    rows = []
    for logits_TV in _float32_rows(logits_BTV):
        z_TV = logits_TV / temperature if temperature != 1.0 else logits_TV
        p_TV = torch.softmax(z_TV, dim=-1)
        rows.append(torch.logsumexp(z_TV, dim=-1) - (p_TV * z_TV).sum(dim=-1))
    return torch.stack(rows) if rows else logits_BTV.new_zeros(logits_BTV.shape[:-1], dtype=torch.float32)


def _float32_rows(logits_BTV: Tensor):
    """Yield (T, V) float32 views/copies of each sequence's logits (a copy only when upcasting)."""
    if logits_BTV.dim() != 3:
        raise ValueError(f"logits must be (B, T, V), got shape {tuple(logits_BTV.shape)}")
    for logits_TV in logits_BTV:
        yield logits_TV if logits_TV.dtype in (torch.float32, torch.float64) else logits_TV.float()
