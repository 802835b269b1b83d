"""Turning a question into the prompt text the policy continues.

- `r1_zero`: the DeepSeek-R1-Zero template for base models (R1 paper, Table 1): the system text, then
  "User: <question>", then "Assistant:" — the model writes <think>...</think><answer>...</answer>.
- `chat`: the tokenizer's own chat template (instruct models), with the system text as system message.
In both, `prefill` (default "<think>") opens the assistant's turn; rewards see prefill + completion.
With `examples` (a JSONL file of worked `prompt` / `response` rows) the first `num_examples` come first as
earlier user / assistant turns: few-shot prompts, e.g. long chains of thought that reflect and verify, for
building cold-start data by sampling a model (R1 section 2.3.1).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from ponder.config import ConfigError, PromptConfig


def render_prompt(question: str, tokenizer, cfg: PromptConfig) -> str:
    """The full prompt text for one question, ending with the prefill."""
    user = cfg.instruction.format(question=question)
    if cfg.mode == "r1_zero":
        head = f"{cfg.system}\n" if cfg.system else ""
        for ex_prompt, ex_response in few_shot(cfg):
            head += f"User: {cfg.instruction.format(question=ex_prompt)}\nAssistant: {ex_response}\n"
        return f"{head}User: {user}\nAssistant:" + (f" {cfg.prefill}" if cfg.prefill else "")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "prompt.mode = 'chat' needs a tokenizer with a chat template; this model has none. "
            "Use --prompt.mode=r1_zero for base models."
        )
    messages = chat_messages(question, cfg)
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text + cfg.prefill


def prompt_ids(question: str, tokenizer, cfg: PromptConfig) -> list[int]:
    """The token ids the policy continues for one question (the rendered text already holds any special
    tokens the template writes, so the tokenizer adds none)."""
    return tokenizer(render_prompt(question, tokenizer, cfg), add_special_tokens=False)["input_ids"]


def chat_messages(question: str, cfg: PromptConfig) -> list[dict[str, str]]:
    """The conversation of `chat` mode, [system?, user], without the prefill: what an API teacher is sent
    (its server applies its own chat template; a chat API cannot prefill the assistant turn)."""
    turns = [{"role": "system", "content": cfg.system}] if cfg.system else []
    for ex_prompt, ex_response in few_shot(cfg):
        turns.append({"role": "user", "content": cfg.instruction.format(question=ex_prompt)})
        turns.append({"role": "assistant", "content": ex_response})
    return [*turns, {"role": "user", "content": cfg.instruction.format(question=question)}]


def few_shot(cfg: PromptConfig) -> list[tuple[str, str]]:
    """The (prompt, response) examples `cfg` puts before the question (none without `examples`)."""
    if not cfg.examples or cfg.num_examples == 0:
        return []
    file = Path(cfg.examples)
    if not file.is_file():
        raise ConfigError(f"prompt.examples = {cfg.examples!r}: no such file")
    st = file.stat()  # the file's version is part of the cache key: a rewritten file is read again
    return list(_read_examples(cfg.examples, cfg.num_examples, st.st_mtime_ns, st.st_size))


@lru_cache(maxsize=8)
def _read_examples(path: str, count: int, _mtime: int, _size: int) -> tuple[tuple[str, str], ...]:
    file = Path(path)
    rows: list[tuple[str, str]] = []
    with file.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{path}:{number}: invalid JSON ({err.msg})") from None
            fields = ("prompt", "response")
            if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in fields):
                raise ConfigError(f"{path}:{number}: a few-shot example needs string 'prompt' and 'response'")
            rows.append((row["prompt"], row["response"]))
            if len(rows) == count:
                break
    if len(rows) < count:
        raise ConfigError(f"prompt.examples = {path!r} holds {len(rows)} examples; num_examples = {count}")
    return tuple(rows)


def response_text(prefill: str, completion: str) -> str:
    """What the rewards judge: the assistant's whole turn, prefill included."""
    return prefill + completion
