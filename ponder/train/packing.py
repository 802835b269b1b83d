"""Prompt + completion sequences as training tensors, and the logits that predict each completion token.

Rows are right-padded: row i is prompt_i, then completion_i, then padding. Left padding (what generation
uses) leaves the padded query rows with nothing to attend to; on CUDA, SDPA then returns NaN gradients
for those rows (measured on an H200 with SmolLM2-135M, bf16 autocast), which poisons every weight through
the backward pass. Right padding keeps every query row attending to at least one real token, and the
positions of real tokens are 0..len-1 as in generation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ponder.rollout.base import Completion


@dataclass
class Packed:
    """A batch of sequences. N rows, T columns, C = longest completion."""

    ids_NT: torch.Tensor
    attn_NT: torch.Tensor
    targets_NC: torch.Tensor  # completion tokens, right-padded
    mask_NC: torch.Tensor  # 1.0 where a completion token counts in the loss
    offsets_N: torch.Tensor  # where each completion starts (= prompt length)

    def rows(self, sl: slice) -> Packed:
        """A micro-batch, with trailing all-padding columns trimmed."""
        attn = self.attn_NT[sl]
        width = int(attn.sum(-1).max())
        return Packed(
            self.ids_NT[sl, :width],
            attn[:, :width],
            self.targets_NC[sl],
            self.mask_NC[sl],
            self.offsets_N[sl],
        )


def pack(completions: list[Completion], pad_id: int, device: torch.device, drop_truncated: bool) -> Packed:
    """Right-padded tensors for a list of completions. `drop_truncated` zeroes the loss mask of samples that
    hit the length limit (DAPO's overlong filtering)."""
    n = len(completions)
    width = max(len(c.prompt_ids) + len(c.token_ids) for c in completions)
    clen = max(1, max(len(c.token_ids) for c in completions))
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    attn = torch.zeros((n, width), dtype=torch.long)
    targets = torch.full((n, clen), pad_id, dtype=torch.long)
    mask = torch.zeros((n, clen), dtype=torch.float32)
    offsets = torch.zeros(n, dtype=torch.long)
    for i, c in enumerate(completions):
        p, t = len(c.prompt_ids), len(c.token_ids)
        ids[i, : p + t] = torch.tensor(c.prompt_ids + c.token_ids, dtype=torch.long)
        attn[i, : p + t] = 1
        targets[i, :t] = torch.tensor(c.token_ids, dtype=torch.long)
        offsets[i] = p
        if not (drop_truncated and not c.finished):
            mask[i, :t] = 1.0
    return Packed(ids.to(device), attn.to(device), targets.to(device), mask.to(device), offsets.to(device))


def completion_logits(model: torch.nn.Module, batch: Packed) -> torch.Tensor:
    """Logits predicting each completion token: (b, C, V).

    Only the columns from the earliest completion start onwards go through the LM head (`logits_to_keep`),
    then each row's window is gathered; the model's own head (soft-capping, scaling) is used as is.
    """
    width = batch.ids_NT.shape[1]
    clen = batch.targets_NC.shape[1]
    start = int(batch.offsets_N.min()) - 1  # position predicting the first completion token of some row
    keep = width - start
    logits = model(
        input_ids=batch.ids_NT, attention_mask=batch.attn_NT, logits_to_keep=keep
    ).logits  # (b, K, V)
    steps = torch.arange(clen, device=logits.device)
    index_BC = (batch.offsets_N[:, None] - 1 - start + steps[None, :]).clamp(max=keep - 1)
    return logits.gather(1, index_BC[..., None].expand(-1, -1, logits.shape[-1]))
