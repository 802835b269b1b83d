"""Reward-model reward on a tiny random LlamaForSequenceClassification (CPU, no download)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from ponder.model import build_tiny_tokenizer
from ponder.rewards import REWARDS, Reference
from ponder.rewards.reward_model import RewardModelScorer, register_reward_model

PROMPTS = ["What is 3 + 4?", "Name a prime.", "2 * 5 =", "Say hi.", "Count to three."]
RESPONSES = ["<think>3 + 4 = 7</think><answer>7</answer>", "7", "The product is 10.", "hi", "one two three"]


def tiny_reward_model(tokenizer, num_labels: int = 1) -> LlamaForSequenceClassification:
    """A seeded random Llama sequence classifier sized for the byte tokenizer."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        num_labels=num_labels,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LlamaForSequenceClassification(config)


@pytest.fixture(scope="module")
def scorer() -> RewardModelScorer:
    tokenizer = build_tiny_tokenizer()
    return RewardModelScorer(tiny_reward_model(tokenizer), tokenizer, batch_size=2, max_length=200)


def test_batched_scores_match_one_by_one(scorer):
    batched = scorer.score_batch(PROMPTS, RESPONSES)
    single = [scorer.score_batch([p], [r])[0] for p, r in zip(PROMPTS, RESPONSES, strict=True)]
    assert batched == pytest.approx(single, abs=1e-5)
    assert len(set(round(s, 6) for s in batched)) > 1  # a constant scorer would pass the check above


def test_scores_are_deterministic_and_finite(scorer):
    first = scorer.score_batch(PROMPTS, RESPONSES)
    assert first == scorer.score_batch(PROMPTS, RESPONSES)
    assert all(isinstance(s, float) and math.isfinite(s) for s in first)


def test_render_uses_chat_template_or_plain_text(scorer):
    text = scorer.render("Q?", "A.")
    assert "<|im_start|>user\nQ?<|im_end|>" in text and "<|im_start|>assistant\nA.<|im_end|>" in text
    plain_tokenizer = build_tiny_tokenizer()
    plain_tokenizer.chat_template = None
    plain = RewardModelScorer(scorer.model, plain_tokenizer)
    assert plain.render("Q?", "A.") == "Q?\n\nA."


def test_long_inputs_keep_their_last_tokens(scorer):
    ids = scorer.encode("x" * 500, "the end")
    assert len(ids) == 200
    assert scorer.tokenizer.decode(ids).endswith("the end<|im_end|>\n")


def test_registered_reward_reads_prompt_from_meta(scorer):
    name = "test_reward_model_tiny"
    try:
        reward = register_reward_model(name, scorer)
        ref = Reference("7", meta={"prompt": PROMPTS[0]})
        expected = scorer.score_batch(PROMPTS[:1], RESPONSES[:1])[0]
        assert REWARDS[name] is reward
        assert REWARDS[name](RESPONSES[0], ref) == pytest.approx(expected, abs=1e-6)
        with pytest.raises(KeyError, match="prompt"):
            reward(RESPONSES[0], Reference("7"))
    finally:
        REWARDS.pop(name, None)


def test_loads_from_a_saved_directory(scorer, tmp_path):
    scorer.model.save_pretrained(tmp_path)
    scorer.tokenizer.save_pretrained(tmp_path)
    loaded = RewardModelScorer(tmp_path)
    assert loaded.score_batch(PROMPTS, RESPONSES) == pytest.approx(scorer.score_batch(PROMPTS, RESPONSES))


def test_rejects_multi_label_models_and_mismatched_lengths(scorer):
    tokenizer = build_tiny_tokenizer()
    with pytest.raises(ValueError, match="num_labels"):
        RewardModelScorer(tiny_reward_model(tokenizer, num_labels=2), tokenizer)
    with pytest.raises(ValueError, match="prompts"):
        scorer.score_batch(PROMPTS, RESPONSES[:2])
