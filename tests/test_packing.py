"""Packing prompt+completion rows and gathering completion logits must equal a plain per-row forward."""

import torch

from ponder.model import load_model
from ponder.rollout.base import Completion
from ponder.train.packing import completion_logits, pack


def _completions():
    return [
        Completion([5, 6, 7], [8, 9], "", True),
        Completion([5, 6, 7, 10, 11], [12, 13, 14, 15], "", False),
        Completion([4], [3], "", True),
    ]


def test_completion_logits_match_unpadded_forward_on_cpu():
    model, tok = load_model("tiny")
    cs = _completions()
    packed = pack(cs, tok.pad_token_id, torch.device("cpu"), drop_truncated=False)
    logits = completion_logits(model, packed)
    assert logits.shape[:2] == (3, 4)
    for i, c in enumerate(cs):
        p, t = len(c.prompt_ids), len(c.token_ids)
        ref = model(input_ids=torch.tensor([c.prompt_ids + c.token_ids])).logits[0, p - 1 : p + t - 1]
        torch.testing.assert_close(logits[i, :t], ref, atol=1e-5, rtol=1e-5)
        assert packed.targets_NC[i, :t].tolist() == c.token_ids


def test_micro_batch_rows_trim_padding_and_agree_on_cpu():
    model, tok = load_model("tiny")
    packed = pack(_completions(), tok.pad_token_id, torch.device("cpu"), drop_truncated=False)
    whole = completion_logits(model, packed)
    part = packed.rows(slice(2, 3))
    assert part.ids_NT.shape == (1, 2)  # trailing padding trimmed
    torch.testing.assert_close(completion_logits(model, part)[0, :1], whole[2, :1], atol=1e-5, rtol=1e-5)


def test_truncated_samples_masked_when_asked_on_cpu():
    cs = _completions()
    kept = pack(cs, 0, torch.device("cpu"), drop_truncated=False).mask_NC
    dropped = pack(cs, 0, torch.device("cpu"), drop_truncated=True).mask_NC
    assert kept.sum(-1).tolist() == [2, 4, 1]
    assert dropped.sum(-1).tolist() == [2, 0, 1]


def test_sampler_log_probs_travel_with_the_batch_on_cpu():
    cs = _completions()
    assert pack(cs, 0, torch.device("cpu"), drop_truncated=False).sampler_logp_NC is None  # none given
    for c in cs:
        c.logprobs = [-0.5 * (k + 1) for k in range(len(c.token_ids))]
    packed = pack(cs, 0, torch.device("cpu"), drop_truncated=False)
    assert packed.sampler_logp_NC.tolist() == [[-0.5, -1.0, 0, 0], [-0.5, -1.0, -1.5, -2.0], [-0.5, 0, 0, 0]]
    assert packed.rows(slice(1, 2)).sampler_logp_NC.tolist() == [[-0.5, -1.0, -1.5, -2.0]]
    cs[0].logprobs = None  # one backend row without log-probs: none for the batch
    assert pack(cs, 0, torch.device("cpu"), drop_truncated=False).sampler_logp_NC is None
