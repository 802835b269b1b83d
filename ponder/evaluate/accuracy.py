"""Accuracy of a policy on a fixed list of task items: k samples each (k=1 at temperature 0 is greedy).

Reports, averaged over items and samples (the R1 paper's pass@1 as a mean over k samples):
  accuracy — strict: the single `<answer>` block is right (the R1 rule reward);
  correct  — the answer is right where it is stated: the answer block, else the last number;
  format   — the whole response is `<think>…</think><answer>…</answer>`;
  language_consistency — R1's share of the reasoning in the prompt's language (one script, no mixing).
Each row also carries the response's token count and whether it stopped by itself (`finished`).
"""

from __future__ import annotations

from typing import Any

from ponder.config import PromptConfig, SamplingConfig
from ponder.data.tasks import Item
from ponder.data.templates import chat_messages, prompt_ids
from ponder.evaluate.metrics import has_reflection
from ponder.rewards import score_all
from ponder.rollout.base import Generator
from ponder.rollout.openai_api import ChatGenerator

METRICS = {"accuracy": 1.0, "accuracy_lenient": 1.0, "format": 1.0, "language_consistency": 1.0}


def evaluate_items(
    generator: Generator | ChatGenerator,
    tokenizer,
    items: list[Item],
    prompt: PromptConfig,
    sampling: SamplingConfig,
    samples: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Generate `samples` responses per item and average the rule metrics; also returns the responses.
    A `ChatGenerator` (a teacher over HTTP, `tokenizer` unused) is sent the conversations instead; a chat
    API cannot prefill, so its responses are judged as written."""
    if sampling.temperature == 0:
        samples = 1  # greedy: k copies would agree
    if isinstance(generator, ChatGenerator):
        chats = [chat_messages(it.prompt, prompt) for it in items]
        completions = generator.generate_chat([c for c in chats for _ in range(samples)], sampling, seed)
        prefill = ""
    else:
        ids = [prompt_ids(it.prompt, tokenizer, prompt) for it in items]
        completions = generator.generate([p for p in ids for _ in range(samples)], sampling, seed)
        prefill = prompt.prefill
    rows = []
    for i, c in enumerate(completions):
        item = items[i // samples]
        s = score_all(prefill + c.text, item.ref, METRICS)
        rows.append(
            {
                "id": item.id,
                "response": prefill + c.text,
                "answer": item.ref.answer,
                "tokens": len(c.token_ids),
                "finished": bool(c.finished),
                **s,
            }
        )
    n = max(1, len(rows))
    return {
        "n_items": len(items),
        "samples": samples,
        "accuracy": sum(r["accuracy"] for r in rows) / n,
        "correct": sum(r["accuracy_lenient"] > 0 for r in rows) / n,
        "format": sum(r["format"] for r in rows) / n,
        "response_len_mean": sum(len(c.token_ids) for c in completions) / n,
        "reflection": sum(has_reflection(r["response"]) for r in rows) / n,
        "rows": rows,
    }
