"""Generation with transformers `generate()`: the simple, always-available backend.

It reads the trainer's live parameters (the same module object), so after an optimizer step the next
rollout uses the new weights without a copy. Prompts are left-padded so that every completion starts in
the same column.
"""

from __future__ import annotations

import torch

from ponder.config import SamplingConfig
from ponder.rollout.base import Completion, stop_ids, stop_string_cut


class HFGenerator:
    """`Generator` over a transformers causal LM; `max_batch` bounds memory per `generate()` call."""

    def __init__(
        self, model: torch.nn.Module, tokenizer, max_batch: int = 64, autocast: torch.dtype | None = None
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.autocast = autocast
        self.stop_ids = stop_ids(model, tokenizer)

    @torch.no_grad()
    def generate(self, prompt_ids: list[list[int]], sampling: SamplingConfig, seed: int) -> list[Completion]:
        torch.manual_seed(seed)
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        dtype = self.autocast or torch.float32
        out: list[Completion] = []
        try:
            with torch.autocast(device.type, dtype=dtype, enabled=self.autocast is not None):
                for start in range(0, len(prompt_ids), self.max_batch):
                    out.extend(self._generate_batch(prompt_ids[start : start + self.max_batch], sampling))
        finally:
            self.model.train(was_training)
        return out

    def _generate_batch(self, prompts: list[list[int]], sampling: SamplingConfig) -> list[Completion]:
        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            input_ids[i, width - len(p) :] = torch.tensor(p)
            attention[i, width - len(p) :] = 1
        greedy = sampling.temperature == 0
        seqs = self.model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            do_sample=not greedy,
            temperature=None if greedy else sampling.temperature,
            top_p=None if greedy else sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 and not greedy else None,
            max_new_tokens=sampling.max_new_tokens,
            min_new_tokens=sampling.min_new_tokens or None,
            stop_strings=sampling.stop or None,
            tokenizer=self.tokenizer if sampling.stop else None,
            eos_token_id=self.stop_ids,
            pad_token_id=pad,
        )
        new_BC = seqs[:, width:].tolist()  # (B, C) sampled tokens, padded after a stop
        return [self._completion(p, row, sampling.stop) for p, row in zip(prompts, new_BC, strict=True)]

    def _completion(self, prompt: list[int], row: list[int], stops: list[str]) -> Completion:
        cut = next((i + 1 for i, t in enumerate(row) if t in self.stop_ids), None)
        text_cut = stop_string_cut(row[:cut] if cut else row, self.tokenizer, stops)
        cut = text_cut if text_cut is not None else cut
        tokens = row if cut is None else row[:cut]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return Completion(prompt_ids=list(prompt), token_ids=tokens, text=text, finished=cut is not None)
