"""The paged KV cache tensors: a K and a V tensor per layer, (num_blocks + 1, block_size, kv_heads, head_dim).

The extra last block (`scratch_block`) belongs to nobody: padded rows of a CUDA-graph decode batch write
their K/V there and read it back, so padding never touches a live sequence's blocks.
"""

from __future__ import annotations

import torch


class KVCache:
    """Storage only; which block belongs to whom is the `BlockManager`'s business."""

    def __init__(
        self,
        num_layers: int,
        num_blocks: int,
        block_size: int,
        kv_heads: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        shape = (num_blocks + 1, block_size, kv_heads, head_dim)
        self.scratch_block = num_blocks
        # zeros, not empty: padded block-table entries gather these, and masked garbage must stay finite
        # (a NaN value times a zero attention weight is still NaN).
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.block_size = block_size
        self.dtype = dtype
        self.device = device

    def write(self, layer: int, slots_N: torch.Tensor, k_NKD: torch.Tensor, v_NKD: torch.Tensor) -> None:
        """Store the K/V of N new tokens at flat slots (block * block_size + offset)."""
        # under autocast K/V may arrive in float32 (RoPE tables follow the residual stream's dtype)
        self.k[layer].view(-1, *k_NKD.shape[1:])[slots_N] = k_NKD.to(self.dtype)
        self.v[layer].view(-1, *v_NKD.shape[1:])[slots_N] = v_NKD.to(self.dtype)

    def copy_block(self, src: int, dst: int) -> None:
        """Copy one block's K/V in every layer (a forked sample's private partial block)."""
        for k, v in zip(self.k, self.v, strict=True):
            k[dst].copy_(k[src])
            v[dst].copy_(v[src])
