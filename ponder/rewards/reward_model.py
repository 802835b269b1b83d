"""Reward from a learned reward model: a transformers sequence classifier with one output (a scalar score).

R1 scores reasoning with rules only (arXiv:2501.12948 section 2.2.2: a neural reward model invites reward
hacking), but its general-purpose stage uses reward models for helpfulness and harmlessness (section
2.3.4). This module needs torch and transformers, so `ponder.rewards` does not import it; import it
yourself:

    from ponder.rewards.reward_model import RewardModelScorer, register_reward_model
    scorer = RewardModelScorer("path/to/rm", tokenizer=None)        # tokenizer loaded from the same path
    register_reward_model("helpful", scorer)                      # reward "helpful" reads ref.meta["prompt"]
    scores = scorer.score_batch(prompts, responses)               # the trainer's batched path
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from ponder.rewards.base import Reference, register_reward


class RewardModelScorer:
    """Scores (prompt, response) pairs with a sequence classifier whose `num_labels` is 1.

    model_path_or_model: a directory / hub id for `AutoModelForSequenceClassification`, or a loaded model.
    tokenizer: the model's tokenizer; None loads it from `model_path_or_model` (a path only).
    The model is moved to `device` and put in eval mode. Inputs longer than `max_length` tokens keep their
    last `max_length` tokens: the score is read at the last token, so the end of the response must stay.
    """

    def __init__(
        self,
        model_path_or_model: str | Path | PreTrainedModel,
        tokenizer=None,
        batch_size: int = 16,
        device: str | torch.device = "cpu",
        max_length: int = 2048,
    ) -> None:
        if batch_size < 1 or max_length < 1:
            raise ValueError(f"batch_size and max_length must be >= 1, got {batch_size}, {max_length}")
        if isinstance(model_path_or_model, (str, Path)):
            model = AutoModelForSequenceClassification.from_pretrained(model_path_or_model, num_labels=1)
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(model_path_or_model)
        else:
            model = model_path_or_model
        if tokenizer is None:
            raise ValueError("tokenizer is required when a loaded model is passed")
        if model.config.num_labels != 1:
            raise ValueError(f"a reward model has num_labels=1, this one has {model.config.num_labels}")
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.batch_size, self.device, self.max_length = batch_size, torch.device(device), max_length
        self.pad_id = _pad_id(model, tokenizer)

    def render(self, prompt: str, response: str) -> str:
        """The text the model reads: the chat template with user=prompt, assistant=response when the
        tokenizer has one (the format reward models are trained on), else "prompt\\n\\nresponse"."""
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        return f"{prompt}\n\n{response}"

    def encode(self, prompt: str, response: str) -> list[int]:
        """Token ids of `render(prompt, response)`, the last `max_length` kept."""
        # A chat template already writes the special tokens it wants; plain text gets the tokenizer's.
        templated = bool(getattr(self.tokenizer, "chat_template", None))
        ids = self.tokenizer(self.render(prompt, response), add_special_tokens=not templated)["input_ids"]
        return ids[-self.max_length :]

    @torch.no_grad()
    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """One float score per (prompt, response) pair, in input order.

        Pairs are sorted by length and run `batch_size` at a time, right-padded: with causal attention
        right padding leaves each row's positions as if it ran alone, so batched scores match one-by-one.
        """
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        rows = [self.encode(p, r) for p, r in zip(prompts, responses, strict=True)]
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        scores = [0.0] * len(rows)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            for i, score in zip(chunk, self._forward([rows[i] for i in chunk]), strict=True):
                scores[i] = score
        return scores

    def _forward(self, rows: list[list[int]]) -> list[float]:
        """Scores of token-id rows: right-pad to one length, one forward pass, logit 0 of each row."""
        width = max(len(row) for row in rows)
        ids_BT = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask_BT = torch.zeros((len(rows), width), dtype=torch.long)
        for b, row in enumerate(rows):
            ids_BT[b, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask_BT[b, : len(row)] = 1
        # HF's classifier pools at the last token that is not pad_token_id: right padding keeps it the end.
        logits_B1 = self.model(
            input_ids=ids_BT.to(self.device), attention_mask=mask_BT.to(self.device)
        ).logits
        return logits_B1[:, 0].float().cpu().tolist()


def _pad_id(model: PreTrainedModel, tokenizer) -> int:
    """The pad id, set on the model config when missing (many reward models ship without one, and
    transformers then refuses batches of more than one); the tokenizer's pad, else its eos."""
    pad_id = model.config.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad_id is None:
            raise ValueError("neither the model config nor the tokenizer defines a pad or eos token")
        model.config.pad_token_id = pad_id
    return int(pad_id)


def register_reward_model(name: str, scorer: RewardModelScorer) -> Callable[[str, Reference], float]:
    """Register reward `name`: the scorer's score of (ref.meta["prompt"], completion).

    A reward only sees (completion, ref), so the item must carry its prompt as `meta["prompt"]` (the raw
    user prompt, not the rendered template: the scorer applies its own chat template). One pair per call;
    a trainer that wants batching calls `scorer.score_batch` directly.
    """

    def reward_model(completion: str, ref: Reference) -> float:
        """Reward-model score of (ref.meta["prompt"], completion)."""
        if "prompt" not in ref.meta:
            raise KeyError(f"reward {name!r} needs the prompt in Reference.meta['prompt']")
        return scorer.score_batch([ref.meta["prompt"]], [completion])[0]

    return register_reward(name)(reward_model)
