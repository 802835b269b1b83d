"""Prompt + completion sequences as training tensors, and the logits that predict each completion token.

Rows are right-padded: row i is prompt_i, then completion_i, then padding. Left padding (what generation
uses) leaves the padded query rows with nothing to attend to; on CUDA, SDPA then returns NaN gradients
for those rows (measured on an H200 with SmolLM2-135M, bf16 autocast), which poisons every weight through
the backward pass. Right padding keeps every query row attending to at least one real token, and the
positions of real tokens are 0..len-1 as in generation.

`SequenceRows` / `layout` / `first_fit` hold whole sequences (SFT) instead, optionally several per row
(packing) with positions restarting and a block-diagonal causal mask.
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
    # the sampler's log-probs of the completion tokens, right-padded with 0; None when a backend gave none
    sampler_logp_NC: torch.Tensor | None = None

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
            None if self.sampler_logp_NC is None else self.sampler_logp_NC[sl],
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
    have_logp = all(c.logprobs is not None and len(c.logprobs) == len(c.token_ids) for c in completions)
    sampler_logp = torch.zeros((n, clen), dtype=torch.float32) if have_logp else None
    for i, c in enumerate(completions):
        p, t = len(c.prompt_ids), len(c.token_ids)
        ids[i, : p + t] = torch.tensor(c.prompt_ids + c.token_ids, dtype=torch.long)
        attn[i, : p + t] = 1
        targets[i, :t] = torch.tensor(c.token_ids, dtype=torch.long)
        offsets[i] = p
        if sampler_logp is not None and t:
            sampler_logp[i, :t] = torch.tensor(c.logprobs, dtype=torch.float32)
        if not (drop_truncated and not c.finished):
            mask[i, :t] = 1.0
    return Packed(
        ids.to(device),
        attn.to(device),
        targets.to(device),
        mask.to(device),
        offsets.to(device),
        None if sampler_logp is None else sampler_logp.to(device),
    )


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


# ------------------------------------------------------------------------- whole sequences (SFT)


@dataclass
class SequenceRows:
    """Whole token sequences in N right-padded rows of T columns; with packing, several share a row.

    A packed sequence keeps its own positions (restarting at 0) and attends only to itself, so its logits
    equal those of a forward pass over it alone. `segments_NT` numbers a row's sequences 1, 2, ...; padding
    is 0.
    """

    ids_NT: torch.Tensor
    positions_NT: torch.Tensor
    segments_NT: torch.Tensor
    trained_NT: torch.Tensor  # True where the token is a training target (predicted from the column before)

    def targets(self) -> torch.Tensor:
        """(N, T-1) bool: column t's logits predict `ids_NT[:, t+1]` and that prediction counts in the loss.

        The first token of a packed sequence is never a target: the column before it is another sequence's.
        """
        same = self.segments_NT[:, 1:] == self.segments_NT[:, :-1]
        return self.trained_NT[:, 1:] & same

    def attention_mask(self, implementation: str) -> torch.Tensor | None:
        """The mask for the model's attention `implementation` (`model.config._attn_implementation`).

        One sequence a row: the usual (N, T) padding mask. Packed: an (N, 1, T, T) block-diagonal causal
        mask, True (sdpa) or 0.0 (eager, additive) where query q may attend to key k; padding attends to
        padding, so no query row is fully masked (SDPA would return NaN there). Flash attention takes no 4D
        mask: it gets None and finds the sequences from the restarting `positions_NT` (transformers does).
        """
        if int(self.segments_NT.max()) <= 1:
            return (self.segments_NT > 0).long()
        if implementation.startswith("flash"):
            return None
        width = self.ids_NT.shape[1]
        causal_TT = torch.ones(width, width, dtype=torch.bool, device=self.ids_NT.device).tril()
        same_NTT = self.segments_NT[:, :, None] == self.segments_NT[:, None, :]
        allowed_N1TT = (same_NTT & causal_TT)[:, None]
        if implementation == "eager":
            blocked = torch.finfo(torch.float32).min
            return torch.zeros(allowed_N1TT.shape, device=allowed_N1TT.device).masked_fill(
                ~allowed_N1TT, blocked
            )
        return allowed_N1TT


def first_fit(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` grouped into bins of at most `capacity` tokens (first-fit decreasing; a longer
    item gets a bin of its own). Deterministic: ties keep index order, each bin lists its indices sorted."""
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        slot = next((b for b, free in enumerate(room) if free >= lengths[i]), None)
        if slot is None:
            bins.append([i])
            room.append(capacity - lengths[i])
        else:
            bins[slot].append(i)
            room[slot] -= lengths[i]
    return [sorted(b) for b in bins]


def layout(
    sequences: list[tuple[list[int], list[bool]]], rows: list[list[int]], pad_id: int, device: torch.device
) -> SequenceRows:
    """Lay `sequences` ((token ids, trained flags) pairs) out in rows; `rows[r]` lists row r's sequences."""
    widths = [sum(len(sequences[i][0]) for i in row) for row in rows]
    n, width = len(rows), max(widths)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    positions = torch.zeros((n, width), dtype=torch.long)
    segments = torch.zeros((n, width), dtype=torch.long)
    trained = torch.zeros((n, width), dtype=torch.bool)
    for r, row in enumerate(rows):
        col = 0
        for segment, i in enumerate(row, start=1):
            tokens, flags = sequences[i]
            end = col + len(tokens)
            ids[r, col:end] = torch.tensor(tokens, dtype=torch.long)
            positions[r, col:end] = torch.arange(len(tokens))
            segments[r, col:end] = segment
            trained[r, col:end] = torch.tensor(flags, dtype=torch.bool)
            col = end
    return SequenceRows(ids.to(device), positions.to(device), segments.to(device), trained.to(device))
