"""Prompt rendering: the R1-Zero plain template for base models and chat-template mode for instruct models."""

import pytest

from ponder.config import R1_ZERO_SYSTEM, PromptConfig
from ponder.data.templates import render_prompt
from ponder.model import build_tiny_tokenizer


def test_r1_zero_template_on_cpu():
    cfg = PromptConfig(mode="r1_zero", instruction="Solve: {question}")
    text = render_prompt("What is 2 + 3?", None, cfg)
    assert text == f"{R1_ZERO_SYSTEM}\nUser: Solve: What is 2 + 3?\nAssistant: <think>"
    bare = render_prompt("Q", None, PromptConfig(mode="r1_zero", system="", prefill=""))
    assert bare == "User: Q\nAssistant:"


def test_chat_template_with_system_and_prefill_on_cpu():
    tok = build_tiny_tokenizer()
    text = render_prompt("What is 2 + 3?", tok, PromptConfig(mode="chat", system="Be brief."))
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert "<|im_start|>user\nWhat is 2 + 3?<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n<think>")
    no_system = render_prompt("Q", tok, PromptConfig(mode="chat", system=""))
    assert "system" not in no_system


def test_chat_mode_without_template_is_a_clear_error_on_cpu():
    tok = build_tiny_tokenizer()
    tok.chat_template = None
    with pytest.raises(ValueError, match="--prompt.mode=r1_zero"):
        render_prompt("Q", tok, PromptConfig(mode="chat"))
