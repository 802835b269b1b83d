"""Pure RL math for GRPO-style training (torch + stdlib only): advantages, KL estimators, policy losses.

Everything the trainer picks by name lives in a `Registry`: `ADVANTAGES`, `KL_ESTIMATORS`,
`LOSS_AGGREGATIONS`; look names up with `get(registry, name)` for an error that lists the allowed names.
"""

from ponder.algos.advantages import (
    ADVANTAGES,
    advantages_with_unscorable,
    dr_grpo_advantages,
    grpo_advantages,
    rloo_advantages,
)
from ponder.algos.kl import KL_ESTIMATORS, kl_k1, kl_k2, kl_k3
from ponder.algos.losses import (
    LOSS_AGGREGATIONS,
    aggregate_dapo,
    aggregate_dr_grpo,
    aggregate_grpo,
    clipped_surrogate,
    entropy_from_logits,
    policy_loss,
    sampler_gap,
    token_logprobs,
    truncated_importance_weights,
)
from ponder.registry import Registry, get

__all__ = [
    "ADVANTAGES",
    "KL_ESTIMATORS",
    "LOSS_AGGREGATIONS",
    "Registry",
    "advantages_with_unscorable",
    "aggregate_dapo",
    "aggregate_dr_grpo",
    "aggregate_grpo",
    "clipped_surrogate",
    "dr_grpo_advantages",
    "entropy_from_logits",
    "get",
    "grpo_advantages",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "policy_loss",
    "rloo_advantages",
    "sampler_gap",
    "token_logprobs",
    "truncated_importance_weights",
]
