"""A paged-KV-cache generation engine in plain PyTorch (first slice of "a fast rollout engine").

    from ponder.rollout.engine import Engine
    engine = Engine(model, tokenizer, num_blocks=512, block_size=16, max_batch=64)
    completions = engine.generate(prompt_ids, SamplingConfig(max_new_tokens=64), seed=0)

Layout (nano-vllm's split, our own code): `sequence` (one request's state), `block_manager` (block ids,
ref counts, free list), `kv_cache` (the K/V tensors), `scheduler` (continuous batching + preemption),
`model` (Llama-family forward over the HF module's live weights), `sampler`, `engine` (the loop).
"""

from ponder.rollout.engine.engine import Engine, EngineStats

__all__ = ["Engine", "EngineStats"]
