"""Reward routing for mixed prompts: rule rewards for reasoning prompts, reward models for general ones.

DeepSeek-R1's RL for all scenarios (arXiv:2501.12948 section 2.3.4): reasoning data keeps R1-Zero's rule
rewards; general data is scored by reward models of human preference, helpfulness on "the final summary"
only (so the reasoning is not judged) and harmlessness on "the entire response, including both the
reasoning process and the summary". An item's kind is `ref.meta["kind"]` ("reasoning" when absent); a
GRPO group is one item's samples, so it is all reasoning or all general and advantages stay per group.

`RoutedRewards.score` scores a whole rollout: rule rewards per sample on a thread pool, and each reward
model once over all the rollout's general samples (`score_batch`), never once per sample. Reward-model
scores are raw (unbounded logits): group normalisation (grpo, rloo) makes them comparable with the rule
rewards' [0, 1]; an advantage without the std division (dr_grpo) keeps their scale, so set `weight`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ponder.rewards.base import Reference, score_all
from ponder.rewards.extract import summary_text

REASONING, GENERAL = "reasoning", "general"

# What each target shows a reward model of the response (the prompt always goes with it).
TARGETS: dict[str, Callable[[str], str]] = {"answer": summary_text, "all": lambda response: response}


def kind_of(ref: Reference) -> str:
    """ "general" or "reasoning" (items that do not say are reasoning)."""
    return ref.meta.get("kind", REASONING)


def preference_active(step: int, total_steps: int, last_steps: int) -> bool:
    """Whether preference rewards are on at `step` (1-based) of `total_steps`: in the last `last_steps`
    steps, or always when `last_steps` is 0 (R1: the last 400 of 1,700)."""
    return last_steps == 0 or step > total_steps - last_steps


@dataclass(frozen=True)
class PreferenceModel:
    """A reward model in the routing: `scorer.score_batch(prompts, texts) -> list[float]` (a
    `RewardModelScorer`), shown the `target` part of each response ("answer" or "all"), weighted."""

    name: str
    scorer: Any
    target: str = "all"
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {sorted(TARGETS)}, got {self.target!r}")


class RoutedRewards:
    """Scores rollouts: reasoning samples by `weights` (rule rewards; plus `always` names, logged but not
    weighted), general samples by `general_weights` (rule rewards that need no gold answer) plus each
    preference model's weighted score. Each sample's dict holds every raw score and "total"."""

    def __init__(
        self,
        weights: Mapping[str, float],
        general_weights: Mapping[str, float] | None = None,
        models: Sequence[PreferenceModel] = (),
        always: Sequence[str] = (),
        workers: int = 4,
    ) -> None:
        self.weights, self.general_weights = dict(weights), dict(general_weights or {})
        self.models, self.always = list(models), tuple(always)
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="reward")

    def score(self, refs: Sequence[Reference], responses: Sequence[str]) -> list[dict[str, float]]:
        """One score dict per (ref, response), in order."""
        if len(refs) != len(responses):
            raise ValueError(f"{len(refs)} references but {len(responses)} responses")
        general = [i for i, ref in enumerate(refs) if kind_of(ref) == GENERAL]
        chosen = set(general)
        reasoning = [i for i in range(len(refs)) if i not in chosen]
        out: list[dict[str, float]] = [{} for _ in refs]
        rules = self.pool.map(self._rules, [refs[i] for i in reasoning], [responses[i] for i in reasoning])
        for i, scores in zip(reasoning, rules, strict=True):
            out[i] = scores
        if general:
            g_refs, g_responses = [refs[i] for i in general], [responses[i] for i in general]
            for i, scores in zip(general, self._general(g_refs, g_responses), strict=True):
                out[i] = scores
        return out

    def _rules(self, ref: Reference, response: str) -> dict[str, float]:
        scores = score_all(response, ref, self.weights)
        for name in self.always:
            if name not in scores:
                scores[name] = score_all(response, ref, {name: 1.0})[name]
        return scores

    def _general(self, refs: list[Reference], responses: list[str]) -> list[dict[str, float]]:
        """General samples: their rule rewards, then each model once over all of them."""
        scores = list(self.pool.map(lambda r, x: score_all(x, r, self.general_weights), refs, responses))
        if not self.models:
            return scores
        if any("prompt" not in ref.meta for ref in refs):
            raise KeyError("general items need their prompt in Reference.meta['prompt'] for reward models")
        prompts = [ref.meta["prompt"] for ref in refs]
        for model in self.models:
            texts = [TARGETS[model.target](response) for response in responses]
            for s, value in zip(scores, model.scorer.score_batch(prompts, texts), strict=True):
                s[model.name] = float(value)
                s["total"] += model.weight * float(value)
        return scores

    def close(self) -> None:
        self.pool.shutdown(wait=False)
