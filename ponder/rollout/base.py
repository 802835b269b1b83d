"""The rollout interface every generation backend implements (transformers today, the fast engine later)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from ponder.config import SamplingConfig


@dataclass
class Completion:
    """One sampled continuation of one prompt.

    `token_ids` stop after the first end-of-sequence token (which is kept, so the policy learns to stop);
    `finished` is False when the sample ran into `max_new_tokens` (truncated).
    """

    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    finished: bool
    logprobs: list[float] | None = None  # per sampled token, when the backend computes them


class Generator(Protocol):
    """Samples completions. Prompts arrive already repeated G times for a GRPO group."""

    def generate(self, prompt_ids: list[list[int]], sampling: SamplingConfig, seed: int) -> list[Completion]:
        """Sample one completion per prompt, reproducibly for a given seed and weights."""
        ...


# End-of-turn markers of common chat templates: a chat model's turn ends with one even where the tokenizer's
# eos names another token (e.g. a GGUF read by some transformers versions gives SmolLM2 eos <|im_start|>).
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")


def stop_ids(model: torch.nn.Module, tokenizer) -> list[int]:
    """End-of-sequence ids: the tokenizer's eos, the generation config's (chat models often have two), and
    the end-of-turn marker the tokenizer's chat template writes, when it is a single token."""
    ids: set[int] = set()
    for source in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(source)
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str):
        vocab = tokenizer.get_vocab()
        ids.update(vocab[m] for m in END_OF_TURN if m in template and m in vocab)
    if not ids:
        raise ValueError("the tokenizer has no eos token; set one so generation can stop")
    return sorted(ids)


def stop_string_cut(tokens: list[int], tokenizer, stops: list[str]) -> int | None:
    """Length of the shortest prefix of `tokens` whose text contains one of `stops`, or None."""
    if not stops or not any(s in tokenizer.decode(tokens, skip_special_tokens=True) for s in stops):
        return None
    for k in range(1, len(tokens) + 1):
        text = tokenizer.decode(tokens[:k], skip_special_tokens=True)
        if any(s in text for s in stops):
            return k
    return None
