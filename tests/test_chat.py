"""`ponder chat` in a pseudo-terminal (pexpect): one exchange, /reset, /exit; and the conversation's history.

python -m pytest -q tests/test_chat.py
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pexpect

from ponder.chat import Conversation
from ponder.config import RolloutConfig, SamplingConfig
from ponder.model import load_model
from ponder.rollout.base import Completion
from ponder.rollout.factory import make_generator
from ponder.rollout.stream import Delta

SAMPLING = SamplingConfig(temperature=0.6, top_p=0.95, max_new_tokens=24)  # the command's defaults


def _letters(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", text)


def test_chat_command_streams_an_answer_and_exits():
    model, tok = load_model("tiny:micro")
    # What the command must print: the same model, seed and settings, in this process.
    generator = make_generator(model, tok, RolloutConfig(max_batch=1), None, 1, 512)
    _, answer = Conversation(tok, generator, 512, SAMPLING, seed=3).reply("hello there", lambda d: None)
    assert len(_letters(answer)) >= 4  # a random model writes bytes; these are comparable through a tty

    root = Path(__file__).resolve().parent.parent
    args = ["-m", "ponder.cli", "chat", "tiny:micro", "--seed", "3", "--max-new-tokens", "24"]
    env = {**os.environ, "TERM": "dumb"}  # rich writes no escape codes
    child = pexpect.spawn(sys.executable, args, cwd=root, env=env, encoding="utf-8", timeout=60)
    try:
        child.expect_exact("you>")
        child.sendline("hello there")
        child.expect_exact("you>")
        printed = child.before.split("hello there", 1)[1]
        assert _letters(answer) in _letters(printed)
        child.sendline("/reset")
        child.expect_exact("conversation cleared")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


class Scripted:
    """Writes a fixed response; records the prompts it was given."""

    def __init__(self, tok, text: str) -> None:
        self.tok, self.ids, self.prompts = tok, tok(text, add_special_tokens=False)["input_ids"], []

    def generate(self, prompt_ids, sampling, seed, max_new_tokens=None, on_token=None) -> list[Completion]:
        self.prompts.append(self.tok.decode(prompt_ids[0]))
        for t in self.ids:
            on_token(0, t)
        return [Completion(prompt_ids[0], self.ids, self.tok.decode(self.ids), finished=True)]


def test_history_keeps_answers_not_reasoning():
    _, tok = load_model("tiny:micro")
    gen = Scripted(tok, "<think>secret steps</think><answer>4</answer>")
    chat = Conversation(tok, gen, 512, SAMPLING, system="Be brief.")
    deltas: list[Delta] = []
    assert chat.reply("2+2?", deltas.append) == ("secret steps", "4")
    assert "".join(d.reasoning for d in deltas) == "secret steps"
    assert "".join(d.content for d in deltas) == "4"
    chat.reply("and 3+3?", deltas.append)
    second = gen.prompts[-1]
    assert "Be brief." in second and "2+2?" in second and "and 3+3?" in second
    assert "<|im_start|>assistant\n4<|im_end|>" in second
    assert "secret steps" not in second  # as R1 does: earlier turns' reasoning is not sent back
    chat.reset()
    chat.reply("hi", deltas.append)
    assert "2+2?" not in gen.prompts[-1]
