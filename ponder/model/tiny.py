"""Tiny randomly initialised Llama models with a byte-level tokenizer, for tests and toy tasks.

A tiny model needs no download: `build_tiny("tiny:micro")` returns a seeded model and a tokenizer that
round-trips any text. The tokenizer is character-level over bytes (one token per byte, so one per ASCII
character), which lets a model of a few hundred thousand parameters learn arithmetic-style toy tasks in
seconds; a subword vocabulary would be mostly unused rows at this size.

    python -c "from ponder.model import load_model; print(load_model('tiny')[0])"
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

PAD, EOS, IM_START, IM_END = "<pad>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (PAD, EOS, IM_START, IM_END)

# ChatML like SmolLM2-Instruct, but without a default system prompt: a tiny model has no persona to keep.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class TinyConfig:
    """Shape of a tiny Llama model; `seed` fixes its random initialisation."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    max_position_embeddings: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        for key, value in asdict(self).items():
            if key != "seed" and value <= 0:
                raise ValueError(f"TinyConfig.{key} must be positive, got {value}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"TinyConfig.hidden_size {self.hidden_size} not divisible by num_heads {self.num_heads}"
            )
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"TinyConfig.num_heads {self.num_heads} not divisible by num_kv_heads {self.num_kv_heads}"
            )


TINY_PRESETS: dict[str, TinyConfig] = {
    "micro": TinyConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64),
    "default": TinyConfig(),
    "small": TinyConfig(hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=256),
}


def tiny_preset(name: str) -> TinyConfig:
    """Look up a preset for "tiny" (-> "default") or "tiny:<preset>"."""
    preset = name.partition(":")[2] or "default"
    if preset not in TINY_PRESETS:
        raise ValueError(f"unknown tiny preset {preset!r} in {name!r}; choose from {sorted(TINY_PRESETS)}")
    return TINY_PRESETS[preset]


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer: the 4 special tokens, then one token for each of the 256 bytes.

    BPE with an empty merge list is exactly "one token per byte"; the ByteLevel pre-tokenizer maps bytes to
    printable symbols and its decoder maps them back, so decode(encode(text)) == text for any Unicode text.
    """
    byte_symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + tuple(byte_symbols))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    # use_regex=False: no word splitting, which would only matter if there were merges.
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        eos_token=IM_END,
        additional_special_tokens=[EOS, IM_START],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(
    cfg: TinyConfig, tokenizer: PreTrainedTokenizerFast, dtype: torch.dtype
) -> LlamaForCausalLM:
    """A randomly initialised LlamaForCausalLM; the same `cfg.seed` gives the same weights."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    # fork_rng: seed the init without disturbing the caller's global RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = LlamaForCausalLM(config)
    return model.to(dtype)


def build_tiny(
    name: str, cfg: TinyConfig | None, dtype: torch.dtype
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """Model and tokenizer for "tiny" / "tiny:<preset>"; an explicit `cfg` wins over the preset."""
    preset = tiny_preset(name)  # validates the name even when cfg is given
    cfg = cfg if cfg is not None else preset
    tokenizer = build_tiny_tokenizer()
    return build_tiny_model(cfg, tokenizer, dtype), tokenizer
