"""The CPU sampler (`ponder.rollout.engine.sampler`): draws follow softmax(logits / T) after top-k / top-p,
each row depends only on its own generator, and seeds reproduce."""

import torch

from ponder.config import SamplingConfig
from ponder.rollout.engine.sampler import sample

LOGITS_V = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])


def _gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def _frequencies(sampling: SamplingConfig, n: int = 6000) -> torch.Tensor:
    tokens, _ = sample(LOGITS_V.expand(n, -1), _gens(range(n)), sampling, list(range(n)))
    return torch.bincount(torch.tensor(tokens), minlength=len(LOGITS_V)).double() / n


def test_draws_follow_the_tempered_distribution_and_logprobs_match():
    s = SamplingConfig(temperature=0.8, max_new_tokens=1)
    want = (LOGITS_V / 0.8).softmax(-1).double()
    got = _frequencies(s)
    assert torch.allclose(got, want, atol=0.02), (got, want)  # 6,000 draws: s.e. <= 0.0065
    tokens, logps = sample(LOGITS_V.expand(3, -1), _gens([1, 2, 3]), s, [0, 0, 0])
    assert torch.allclose(torch.tensor(logps), (LOGITS_V / 0.8).log_softmax(-1)[tokens], atol=1e-6)


def test_truncated_tokens_are_never_drawn():
    top2 = _frequencies(SamplingConfig(temperature=1.0, top_k=2, max_new_tokens=1))
    assert top2[2:].sum() == 0 and abs(top2[0] - 1 / (1 + torch.e**-1)) < 0.02
    nucleus = _frequencies(SamplingConfig(temperature=1.0, top_p=0.5, max_new_tokens=1))
    assert nucleus[0] == 1.0  # token 0 alone holds 0.56 of the mass


def test_a_row_depends_only_on_its_generator():
    s = SamplingConfig(temperature=1.0, max_new_tokens=1)
    gen = torch.Generator().manual_seed(0)
    other = torch.randn(7, len(LOGITS_V), generator=gen) * 3
    alone = [sample(LOGITS_V[None], _gens([seed]), s, [0])[0][0] for seed in range(40)]
    for seed in range(40):
        batch = torch.cat([other[:3], LOGITS_V[None], other[3:]])
        tokens, _ = sample(batch, _gens([100, 101, 102, seed, 103, 104, 105, 106]), s, [0] * 8)
        assert tokens[3] == alone[seed]
    assert len(set(alone)) > 2  # the seeds do vary the draw
    again = [sample(LOGITS_V[None], _gens([seed]), s, [0])[0][0] for seed in range(40)]
    assert again == alone
