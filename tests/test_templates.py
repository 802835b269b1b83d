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


def test_few_shot_examples_come_first_as_earlier_turns(tmp_path):
    import json

    from ponder.config import ConfigError, PromptConfig
    from ponder.data.templates import chat_messages, render_prompt

    path = tmp_path / "shots.jsonl"
    rows = [
        {"prompt": "1 + 1", "response": "<think>1 + 1 = 2. Wait: 2 - 1 = 1.</think><answer>2</answer>"},
        {"prompt": "2 + 2", "response": "<think>2 + 2 = 4</think><answer>4</answer>"},
        {"prompt": "3 + 3", "response": "<think>6</think><answer>6</answer>"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = PromptConfig(mode="chat", system="S", examples=str(path), num_examples=2)
    turns = chat_messages("5 + 5", cfg)
    assert [t["role"] for t in turns] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert turns[1]["content"] == "1 + 1" and turns[2]["content"] == rows[0]["response"]
    assert turns[-1]["content"] == "5 + 5" and "3 + 3" not in str(turns)
    text = render_prompt("5 + 5", None, PromptConfig(mode="r1_zero", system="S", examples=str(path)))
    assert text.index("User: 1 + 1") < text.index("User: 2 + 2") < text.index("User: 5 + 5")
    assert text.endswith("Assistant: <think>")
    path.write_text(json.dumps({"prompt": "x"}) + "\n")  # rewritten: read again, and the bad row is named
    with pytest.raises(ConfigError, match=r"shots.jsonl:1: .*'prompt' and 'response'"):
        chat_messages("5 + 5", cfg)
    with pytest.raises(ConfigError, match="no such file"):
        chat_messages("q", PromptConfig(examples=str(tmp_path / "none.jsonl")))


def test_stop_ids_include_the_chat_templates_end_of_turn():
    from types import SimpleNamespace

    from ponder.rollout.base import stop_ids

    class Tok:
        eos_token_id = 1  # a tokenizer whose eos names the turn *start* token
        chat_template = "{% for m in messages %}<|im_start|>{{ m.content }}<|im_end|>{% endfor %}"

        def get_vocab(self):
            return {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}

    model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=None))
    assert stop_ids(model, Tok()) == [1, 2]
    Tok.chat_template = None
    assert stop_ids(model, Tok()) == [1]
