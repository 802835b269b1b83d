"""Tests for ponder.algos: advantages, KL estimators, clipped surrogate, loss aggregation, log-probs.

Each vectorised function is checked against hand-computed numbers and against a naive looped reference.
Run: python -m pytest -q tests/test_algos.py
"""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from ponder.algos import (
    ADVANTAGES,
    KL_ESTIMATORS,
    LOSS_AGGREGATIONS,
    Registry,
    clipped_surrogate,
    entropy_from_logits,
    get,
    policy_loss,
    sampler_gap,
    token_logprobs,
    truncated_importance_weights,
)

# ---------------------------------------------------------------- advantages


def _loop_advantages(name: str, rewards: list[float], g: int, eps: float = 1e-6) -> list[float]:
    out = []
    for start in range(0, len(rewards), g):
        grp = rewards[start : start + g]
        mean = sum(grp) / g
        std = statistics.stdev(grp) if g > 1 else 0.0
        for i, r in enumerate(grp):
            if name == "grpo":
                out.append(0.0 if std == 0 else (r - mean) / (std + eps))
            elif name == "dr_grpo":
                out.append(r - mean)
            else:
                others = grp[:i] + grp[i + 1 :]
                out.append(r - sum(others) / len(others))
    return out


def test_grpo_advantages_hand_values_on_cpu():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0])
    # G=2: each group is [1, 0]: mean 0.5, unbiased std sqrt(0.5).
    a = ADVANTAGES["grpo"](r, 2)
    s = math.sqrt(0.5)
    torch.testing.assert_close(a, torch.tensor([0.5, -0.5, -0.5, 0.5]) / (s + 1e-6))
    # G=4: mean 0.5, unbiased std sqrt(1/3).
    a4 = ADVANTAGES["grpo"](r, 4)
    torch.testing.assert_close(a4, torch.tensor([0.5, -0.5, -0.5, 0.5]) / (math.sqrt(1 / 3) + 1e-6))


def test_dr_grpo_and_rloo_hand_values_on_cpu():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0])
    torch.testing.assert_close(ADVANTAGES["dr_grpo"](r, 2), torch.tensor([0.5, -0.5, -0.5, 0.5]))
    torch.testing.assert_close(ADVANTAGES["dr_grpo"](r, 4), torch.tensor([0.5, -0.5, -0.5, 0.5]))
    torch.testing.assert_close(ADVANTAGES["rloo"](r, 2), torch.tensor([1.0, -1.0, -1.0, 1.0]))
    # G=4: r_0 = 1, others mean 1/3 -> 2/3; r_1 = 0, others mean 2/3 -> -2/3.
    torch.testing.assert_close(ADVANTAGES["rloo"](r, 4), torch.tensor([2, -2, -2, 2]) / 3.0)


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo"])
@pytest.mark.parametrize("g", [2, 3, 8])
def test_advantages_match_loop_reference_on_cpu(name, g):
    gen = torch.Generator().manual_seed(g)
    r = torch.randn(5 * g, generator=gen, dtype=torch.float64)
    expected = torch.tensor(_loop_advantages(name, r.tolist(), g), dtype=torch.float64)
    torch.testing.assert_close(ADVANTAGES[name](r, g), expected)


def test_rloo_is_scaled_mean_baseline_on_cpu():
    g = 6
    r = torch.rand(4 * g, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    centred = ADVANTAGES["dr_grpo"](r, g)
    torch.testing.assert_close(ADVANTAGES["rloo"](r, g), g / (g - 1) * centred)


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo"])
def test_zero_variance_groups_get_zero_advantage_on_cpu(name):
    # 0.1 * 3 is not exact in floating point; the mean residue must not be blown up by 1/eps.
    r = torch.tensor([0.1, 0.1, 0.1, 1.0, 0.0, 1.0, 0.7, 0.7, 0.7])
    a = ADVANTAGES[name](r, 3)
    assert torch.equal(a[:3], torch.zeros(3)) and torch.equal(a[6:], torch.zeros(3))
    assert (a[3:6] != 0).all()


def test_grpo_group_of_one_is_zero_on_cpu():
    a = ADVANTAGES["grpo"](torch.tensor([1.0, 0.0, 3.0]), 1)
    assert torch.equal(a, torch.zeros(3))


def test_advantage_validation_on_cpu():
    with pytest.raises(ValueError, match="multiple of group_size"):
        ADVANTAGES["grpo"](torch.zeros(5), 2)
    with pytest.raises(ValueError, match="group_size >= 2"):
        ADVANTAGES["rloo"](torch.zeros(4), 1)
    with pytest.raises(ValueError, match="1-D"):
        ADVANTAGES["dr_grpo"](torch.zeros(2, 2), 2)


def test_integer_rewards_are_accepted_on_cpu():
    a = ADVANTAGES["dr_grpo"](torch.tensor([1, 0, 0, 0]), 4)
    torch.testing.assert_close(a, torch.tensor([0.75, -0.25, -0.25, -0.25]))


# ---------------------------------------------------------------- KL estimators


def test_kl_estimators_known_values_on_cpu():
    logp = torch.tensor([[-1.0, -2.0, -0.5]])
    ref = torch.tensor([[-1.5, -2.0, 0.0]])
    d = logp - ref  # [0.5, 0, -0.5]
    torch.testing.assert_close(KL_ESTIMATORS["k1"](logp, ref), d)
    torch.testing.assert_close(KL_ESTIMATORS["k2"](logp, ref), 0.5 * d**2)
    k3 = KL_ESTIMATORS["k3"](logp, ref)
    torch.testing.assert_close(k3, torch.tensor([[math.exp(-0.5) + 0.5 - 1, 0.0, math.exp(0.5) - 0.5 - 1]]))


def test_k3_nonnegative_zero_when_equal_and_finite_on_cpu():
    gen = torch.Generator().manual_seed(0)
    logp = torch.randn(8, 16, generator=gen) * 3
    ref = torch.randn(8, 16, generator=gen) * 3
    assert (KL_ESTIMATORS["k3"](logp, ref) >= 0).all()
    assert torch.equal(KL_ESTIMATORS["k3"](logp, logp), torch.zeros_like(logp))
    extreme = KL_ESTIMATORS["k3"](torch.tensor([[-1000.0, 0.0]]), torch.tensor([[0.0, -1000.0]]))
    assert torch.isfinite(extreme).all()


def test_k1_k3_unbiased_monte_carlo_on_cpu():
    gen = torch.Generator().manual_seed(0)
    logp_V = torch.log_softmax(torch.randn(6, generator=gen), -1)
    logq_V = torch.log_softmax(torch.randn(6, generator=gen), -1)
    true_kl = (logp_V.exp() * (logp_V - logq_V)).sum()
    samples = torch.multinomial(logp_V.exp(), 200_000, replacement=True, generator=gen)
    logp_S, logq_S = logp_V[samples][None], logq_V[samples][None]
    for name in ("k1", "k3"):
        est = KL_ESTIMATORS[name](logp_S, logq_S).mean()
        assert abs(est - true_kl) < 0.02 * max(true_kl.item(), 1.0), (name, est, true_kl)


# ---------------------------------------------------------------- clipped surrogate


def test_clipped_surrogate_inside_range_on_cpu():
    logp = torch.log(torch.tensor([[1.1, 0.9]]))
    loss, clipped = clipped_surrogate(logp, torch.zeros(1, 2), torch.tensor([2.0]), 0.2, 0.28)
    torch.testing.assert_close(loss, torch.tensor([[-2.2, -1.8]]))
    assert not clipped.any()


def test_clipped_surrogate_above_high_positive_adv_has_zero_grad_on_cpu():
    logp = torch.log(torch.tensor([[1.5]])).requires_grad_()
    loss, clipped = clipped_surrogate(logp, torch.zeros(1, 1), torch.tensor([1.0]), 0.2, 0.28)
    torch.testing.assert_close(loss, torch.tensor([[-1.28]]))
    assert clipped.all()
    loss.sum().backward()
    assert logp.grad.abs().max() == 0
    # Same ratio, A < 0: the unclipped term is the pessimistic one, not clipped, gradient flows.
    loss_neg, clipped_neg = clipped_surrogate(logp, torch.zeros(1, 1), torch.tensor([-1.0]), 0.2, 0.28)
    torch.testing.assert_close(loss_neg, torch.tensor([[1.5]]))
    assert not clipped_neg.any()


def test_clipped_surrogate_below_low_negative_adv_on_cpu():
    logp = torch.log(torch.tensor([[0.5]])).requires_grad_()
    loss, clipped = clipped_surrogate(logp, torch.zeros(1, 1), torch.tensor([-2.0]), 0.2, 0.28)
    torch.testing.assert_close(loss, torch.tensor([[0.8 * 2.0]]))
    assert clipped.all()
    loss.sum().backward()
    assert logp.grad.abs().max() == 0
    # Below the low edge with A > 0 is not clipped (pessimistic bound keeps the unclipped term).
    loss_pos, clipped_pos = clipped_surrogate(logp, torch.zeros(1, 1), torch.tensor([2.0]), 0.2, 0.28)
    torch.testing.assert_close(loss_pos, torch.tensor([[-1.0]]))
    assert not clipped_pos.any()


def test_clipped_surrogate_gradient_matches_hand_formula_on_cpu():
    gen = torch.Generator().manual_seed(0)
    logp = (torch.randn(4, 7, generator=gen, dtype=torch.float64) * 0.3).requires_grad_()
    old = torch.randn(4, 7, generator=gen, dtype=torch.float64) * 0.3
    adv = torch.randn(4, generator=gen, dtype=torch.float64)
    eps_low, eps_high = 0.2, 0.28
    loss, clipped = clipped_surrogate(logp, old, adv, eps_low, eps_high)
    loss.sum().backward()
    ratio = (logp - old).exp().detach()
    a = adv[:, None].expand_as(ratio)
    # d/dlogp of -rho*A is -rho*A where the unclipped term is active, else 0.
    active = ~(((ratio > 1 + eps_high) & (a > 0)) | ((ratio < 1 - eps_low) & (a < 0)))
    torch.testing.assert_close(logp.grad, torch.where(active, -ratio * a, torch.zeros_like(ratio)))
    assert torch.equal(clipped, ~active)
    assert clipped.any() and (~clipped).any()  # the draw exercises both branches


# ---------------------------------------------------------------- aggregation


def _loop_aggregate(name, loss, mask, total_seqs, total_tokens, max_len):
    total = 0.0
    for b in range(loss.shape[0]):
        seq = sum(loss[b, t].item() for t in range(loss.shape[1]) if mask[b, t])
        n = int(mask[b].sum())
        if name == "grpo":
            total += seq / max(n, 1) / total_seqs
        elif name == "dapo":
            total += seq / total_tokens
        else:
            total += seq / (total_seqs * max_len)
    return total


def _random_batch(seed=0, b=6, t=5):
    gen = torch.Generator().manual_seed(seed)
    loss = torch.randn(b, t, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([5, 3, 1, 0, 4, 2])[:b]
    mask = torch.arange(t)[None, :] < lengths[:, None]
    return loss, mask


def test_aggregations_hand_values_on_cpu():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    kw = dict(total_seqs=2, total_tokens=4, max_len=3)
    torch.testing.assert_close(LOSS_AGGREGATIONS["grpo"](loss, mask, **kw), torch.tensor((2.0 + 4.0) / 2))
    torch.testing.assert_close(LOSS_AGGREGATIONS["dapo"](loss, mask, **kw), torch.tensor(10.0 / 4))
    torch.testing.assert_close(LOSS_AGGREGATIONS["dr_grpo"](loss, mask, **kw), torch.tensor(10.0 / 6))


@pytest.mark.parametrize("name", ["grpo", "dapo", "dr_grpo"])
def test_aggregation_matches_loop_and_microbatch_split_on_cpu(name):
    loss, mask = _random_batch()
    kw = dict(total_seqs=loss.shape[0], total_tokens=int(mask.sum()), max_len=loss.shape[1])
    full = LOSS_AGGREGATIONS[name](loss, mask, **kw)
    assert torch.isfinite(full)  # the empty sequence (length 0) must not produce nan
    torch.testing.assert_close(full.item(), _loop_aggregate(name, loss, mask, **kw))
    halves = sum(LOSS_AGGREGATIONS[name](loss[s], mask[s], **kw) for s in (slice(0, 2), slice(2, None)))
    torch.testing.assert_close(halves, full)


@pytest.mark.parametrize("name", ["grpo", "dapo", "dr_grpo"])
def test_policy_loss_microbatch_grad_equals_full_batch_on_cpu(name):
    gen = torch.Generator().manual_seed(1)
    loss0, mask = _random_batch()
    logp0 = loss0 * 0.2
    old = (logp0 + 0.1 * torch.randn(logp0.shape, generator=gen, dtype=torch.float64)).detach()
    ref = (logp0 + 0.1 * torch.randn(logp0.shape, generator=gen, dtype=torch.float64)).detach()
    adv = torch.randn(loss0.shape[0], generator=gen, dtype=torch.float64)
    kw = dict(
        eps_low=0.2, eps_high=0.28, total_seqs=6, total_tokens=int(mask.sum()), max_len=5, ref_logp_BT=None
    )

    def run(slices):
        logp = logp0.clone().requires_grad_()
        total, stats_sum = 0.0, {}
        for s in slices:
            kw["ref_logp_BT"] = ref[s]
            loss, stats = policy_loss(name, logp[s], old[s], adv[s], mask[s], beta=0.04, **kw)
            loss.backward()
            total = total + loss.detach()
            stats_sum = {k: stats_sum.get(k, 0) + v for k, v in stats.items()}
        return total, logp.grad, stats_sum

    full, grad_full, stats_full = run([slice(None)])
    split, grad_split, stats_split = run([slice(0, 3), slice(3, None)])
    torch.testing.assert_close(split, full)
    torch.testing.assert_close(grad_split, grad_full)
    for k in stats_full:
        torch.testing.assert_close(stats_split[k], stats_full[k])
    assert stats_full["tokens"] == mask.sum()


def test_policy_loss_adds_beta_kl_and_reports_stats_on_cpu():
    logp = torch.log(torch.tensor([[0.5, 1.5, 1.0]]))
    old = torch.zeros(1, 3)
    ref = torch.tensor([[0.0, 0.0, -1.0]])
    mask = torch.tensor([[1, 1, 0]])
    adv = torch.tensor([1.0])
    kw = dict(eps_low=0.2, eps_high=0.2, total_seqs=1, total_tokens=2, max_len=3)
    loss, stats = policy_loss("dapo", logp, old, adv, mask, ref_logp_BT=ref, beta=0.5, **kw)
    k3 = KL_ESTIMATORS["k3"](logp, ref)
    # token 0: ratio 0.5, A>0 -> -0.5 (not clipped); token 1: ratio 1.5 -> clipped to -1.2; token 2 masked.
    expected = ((-0.5 + 0.5 * k3[0, 0]) + (-1.2 + 0.5 * k3[0, 1])) / 2
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(stats["clip_sum"], torch.tensor(1.0))
    torch.testing.assert_close(stats["kl_sum"], k3[0, :2].sum())
    torch.testing.assert_close(stats["tokens"], torch.tensor(2.0))
    loss_nokl, stats_nokl = policy_loss("dapo", logp, old, adv, mask, **kw)
    torch.testing.assert_close(loss_nokl, torch.tensor((-0.5 - 1.2) / 2))
    assert stats_nokl["kl_sum"] == 0
    with pytest.raises(ValueError, match="ref_logp_BT"):
        policy_loss("dapo", logp, old, adv, mask, beta=0.1, **kw)


# ---------------------------------------------------------------- log-probs, entropy


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_and_entropy_match_categorical_on_cpu(dtype, temperature):
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 4, 11, generator=gen) * 2).to(dtype)
    tokens = torch.randint(0, 11, (3, 4), generator=gen)
    dist = torch.distributions.Categorical(logits=logits.float() / temperature)
    logp = token_logprobs(logits, tokens, temperature)
    assert logp.dtype == torch.float32 and logp.shape == (3, 4)
    torch.testing.assert_close(logp, dist.log_prob(tokens))
    torch.testing.assert_close(entropy_from_logits(logits, temperature), dist.entropy())


def test_token_logprobs_gradient_flows_on_cpu():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    tokens = torch.randint(0, 5, (2, 3))
    token_logprobs(logits, tokens).sum().backward()
    # d log p_k / d z = onehot(k) - softmax(z)
    expected = torch.nn.functional.one_hot(tokens, 5) - torch.softmax(logits.detach(), -1)
    torch.testing.assert_close(logits.grad, expected)


# ---------------------------------------------------------------- registry


def test_unknown_name_error_lists_options_on_cpu():
    with pytest.raises(ValueError) as err:
        get(LOSS_AGGREGATIONS, "dapoo")
    msg = str(err.value)
    assert "dapoo" in msg and "dr_grpo" in msg and "grpo" in msg and "did you mean 'dapo'" in msg
    with pytest.raises(ValueError, match="allowed: k1, k2, k3"):
        KL_ESTIMATORS["k4"]
    with pytest.raises(ValueError, match="loss aggregation"):
        policy_loss(
            "nope",
            *[torch.zeros(1, 1)] * 2,
            torch.zeros(1),
            torch.ones(1, 1),
            eps_low=0.2,
            eps_high=0.2,
            total_seqs=1,
            total_tokens=1,
            max_len=1,
        )


def test_registry_rejects_duplicates_on_cpu():
    reg = Registry("thing")

    @reg.register("a")
    def a():
        return 1

    assert reg["a"] is a and "a" in reg
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(a)


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo"])
def test_unscorable_samples_leave_the_baseline_on_cpu(name):
    from ponder.algos import advantages_with_unscorable

    nan = float("nan")
    rewards = torch.tensor([1.0, 0.0, nan, 1.0, 0.0, 1.0, 1.0, 0.0, nan, nan, nan, 1.0])
    adv = advantages_with_unscorable(name, rewards, 4)
    assert not torch.isnan(adv).any()
    assert adv[2] == 0 and adv[8:11].eq(0).all() and adv[11] == 0  # unscorable, and a group of 1 scorable
    expected = ADVANTAGES[name](torch.tensor([1.0, 0.0, 1.0]), 3)  # group 0 without its NaN member
    torch.testing.assert_close(adv[[0, 1, 3]], expected)
    torch.testing.assert_close(adv[4:8], ADVANTAGES[name](rewards[4:8], 4))
    clean = torch.tensor([1.0, 0.0, 0.0, 1.0])
    torch.testing.assert_close(advantages_with_unscorable(name, clean, 2), ADVANTAGES[name](clean, 2))


def test_truncated_importance_weights_are_the_capped_ratio_on_cpu():
    trainer = torch.tensor([[-1.0, -2.0, -0.5]], requires_grad=True)
    sampler = torch.tensor([[-1.0, -3.0, -0.1]])
    w = truncated_importance_weights(trainer, sampler, cap=2.0)
    assert torch.allclose(w, torch.tensor([[1.0, 2.0, math.exp(-0.4)]]))  # e^1 = 2.72 capped at 2
    assert not w.requires_grad
    with pytest.raises(ValueError, match=">= 1"):
        truncated_importance_weights(trainer, sampler, cap=0.5)


def test_sampler_gap_sums_over_masked_tokens_on_cpu():
    trainer = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, -1.0]])
    sampler = torch.tensor([[-1.0, -3.0, -0.1], [-4.0, -1.0, -1.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0]])  # the -3 difference is masked out
    g = sampler_gap(trainer, sampler, mask, cap=2.0)
    assert float(g["abs_sum"]) == pytest.approx(1.4) and float(g["sum"]) == pytest.approx(-0.6)
    assert float(g["max"]) == pytest.approx(1.0) and float(g["capped"]) == 1.0  # w = e^1 >= 2
    assert "capped" not in sampler_gap(trainer, sampler, mask)
