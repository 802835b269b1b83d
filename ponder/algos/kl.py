"""Per-token estimators of KL(pi_theta || pi_ref): `KL_ESTIMATORS[name](logp_BT, ref_logp_BT) -> kl_BT`.

The tokens were sampled from the policy, so each estimator is a function of the log-ratio at the sampled token
only (no full-vocabulary sums). Source: J. Schulman 2020, "Approximating KL Divergence" (k1, k2, k3).
With log r = ref_logp - logp: k1 = -log r is unbiased but high-variance and can be negative;
k2 = (log r)^2 / 2 is low-variance but biased; k3 = (r - 1) - log r is unbiased, always >= 0 and low-variance.
GRPO (DeepSeekMath, Shao et al. 2024, eq. 4) uses k3.

Shapes: logp_BT, ref_logp_BT (B, T) -> kl_BT (B, T). Masking is the caller's job.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ponder.registry import Registry

KL_ESTIMATORS = Registry("KL estimator")

# exp(20) ~ 4.9e8: far beyond any ratio a healthy run sees, but keeps exp() finite in fp32 and bf16.
K3_LOG_RATIO_CLAMP = 20.0


@KL_ESTIMATORS.register("k1")
def kl_k1(logp_BT: Tensor, ref_logp_BT: Tensor) -> Tensor:
    """k1 = logp - ref_logp  (Schulman 2020). Unbiased for KL(pi||ref) under samples of pi; may be negative.

    Shapes: (B, T), (B, T) -> (B, T).
    """
    return logp_BT - ref_logp_BT


@KL_ESTIMATORS.register("k2")
def kl_k2(logp_BT: Tensor, ref_logp_BT: Tensor) -> Tensor:
    """k2 = 0.5 * (logp - ref_logp)^2  (Schulman 2020). Biased, >= 0, low variance.

    Shapes: (B, T), (B, T) -> (B, T).
    """
    return 0.5 * (logp_BT - ref_logp_BT).square()


@KL_ESTIMATORS.register("k3")
def kl_k3(logp_BT: Tensor, ref_logp_BT: Tensor) -> Tensor:
    """k3 = exp(ref_logp - logp) - (ref_logp - logp) - 1  (Schulman 2020; GRPO, Shao et al. 2024, eq. 4).

    Unbiased for KL(pi||ref) under samples of pi and >= 0 for every sample (x - 1 - log x >= 0).
    For numerical safety the log-ratio is clamped to [-20, 20] before exp; inside that range
    the value is exact, outside it the value saturates and the gradient is zero.

    Shapes: (B, T), (B, T) -> (B, T).
    """
    log_ratio_BT = (ref_logp_BT - logp_BT).clamp(-K3_LOG_RATIO_CLAMP, K3_LOG_RATIO_CLAMP)
    return torch.exp(log_ratio_BT) - log_ratio_BT - 1.0
