"""One place that turns a `RolloutConfig` into a generator for a model (used by the stages)."""

from __future__ import annotations

import torch

from ponder.config import RolloutConfig
from ponder.rollout.base import Generator
from ponder.rollout.engine import Engine
from ponder.rollout.engine.model import unsupported_reason
from ponder.rollout.hf import HFGenerator


def make_generator(
    model: torch.nn.Module,
    tokenizer,
    r: RolloutConfig,
    autocast: torch.dtype | None,
    sequences: int,
    tokens_per_sequence: int,
) -> Generator:
    """Ponder's engine over `model` (KV cache sized for `sequences` of `tokens_per_sequence` when
    `r.num_blocks = 0`), or transformers generate when `r.backend = "hf"` or the engine cannot run the
    architecture. The vLLM backend needs a checkpoint on disk and is built by the GRPO stage only."""
    reason = "rollout.backend = 'hf'" if r.backend == "hf" else unsupported_reason(model)
    if reason is not None:
        if r.backend != "hf":
            print(f"rollout: {reason}; generating with transformers generate() instead", flush=True)
        return HFGenerator(model, tokenizer, r.max_batch, autocast)
    return Engine(
        model,
        tokenizer,
        num_blocks=r.kv_blocks(sequences, tokens_per_sequence),
        block_size=r.block_size,
        max_batch=r.max_batch,
        prefix_cache=r.prefix_cache,
        max_prefill_tokens=r.max_prefill_tokens,
        attention=r.attention,
        cuda_graphs=r.cuda_graphs,
        autocast=autocast,
        decode_splits=r.decode_splits,
        graph_sampling=r.graph_sampling,
        decode_steps=r.decode_steps,
    )
