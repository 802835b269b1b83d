"""Model loading and saving: HF directories, hub ids, GGUF files, tiny random models; HF checkpoints out.

from ponder.model import load_model, save_checkpoint
model, tokenizer = load_model("tiny")
"""

from ponder.model.load import (
    ALIASES,
    AUTOCAST_DTYPES,
    SMOLLM2_INSTALL,
    ModelNotFoundError,
    copy_for_reference,
    load_model,
    pick_device,
    resolve_dtype,
    save_checkpoint,
    smollm2_gguf_path,
)
from ponder.model.tiny import TINY_PRESETS, TinyConfig, build_tiny_tokenizer

__all__ = [
    "ALIASES",
    "AUTOCAST_DTYPES",
    "SMOLLM2_INSTALL",
    "TINY_PRESETS",
    "ModelNotFoundError",
    "TinyConfig",
    "build_tiny_tokenizer",
    "copy_for_reference",
    "load_model",
    "pick_device",
    "resolve_dtype",
    "save_checkpoint",
    "smollm2_gguf_path",
]
