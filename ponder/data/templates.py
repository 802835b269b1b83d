"""Turning a question into the prompt text the policy continues.

- `r1_zero`: the DeepSeek-R1-Zero template for base models (R1 paper, Table 1): the system text, then
  "User: <question>", then "Assistant:" — the model writes <think>...</think><answer>...</answer>.
- `chat`: the tokenizer's own chat template (instruct models), with the system text as system message.
In both, `prefill` (default "<think>") opens the assistant's turn; rewards see prefill + completion.
"""

from __future__ import annotations

from ponder.config import PromptConfig


def render_prompt(question: str, tokenizer, cfg: PromptConfig) -> str:
    """The full prompt text for one question, ending with the prefill."""
    user = cfg.instruction.format(question=question)
    if cfg.mode == "r1_zero":
        head = f"{cfg.system}\n" if cfg.system else ""
        return f"{head}User: {user}\nAssistant:" + (f" {cfg.prefill}" if cfg.prefill else "")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "prompt.mode = 'chat' needs a tokenizer with a chat template; this model has none. "
            "Use --prompt.mode=r1_zero for base models."
        )
    messages = chat_messages(question, cfg)
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text + cfg.prefill


def chat_messages(question: str, cfg: PromptConfig) -> list[dict[str, str]]:
    """The conversation of `chat` mode, [system?, user], without the prefill: what an API teacher is sent
    (its server applies its own chat template; a chat API cannot prefill the assistant turn)."""
    system = [{"role": "system", "content": cfg.system}] if cfg.system else []
    return [*system, {"role": "user", "content": cfg.instruction.format(question=question)}]


def response_text(prefill: str, completion: str) -> str:
    """What the rewards judge: the assistant's whole turn, prefill included."""
    return prefill + completion
