"""The GRPO training stage: R1-Zero-style reinforcement learning with rule rewards.

Run it with `ponder train [RECIPE] [--section.key=value ...]`; resume with `ponder train --resume RUN_DIR`.

One step (DeepSeekMath GRPO, Shao et al. 2024, sec. 4; DeepSeek-R1 sec. 2.2):
  1. draw B task items, render prompts, sample G completions each (old policy = current weights);
  2. score every completion with the weighted rule rewards (+ optional DAPO overlong penalty);
  3. group-relative advantages (registry `algos.ADVANTAGES`); DAPO dynamic sampling may drop groups whose
     rewards are all equal (they carry no signal) and draw more prompts;
  4. μ inner updates over the batch in micro-batches: clipped surrogate (+ β·KL to the reference),
     aggregated by the registry `algos.LOSS_AGGREGATIONS`, gradient clipping, AdamW.
Departures from the paper: the reference model is optionally reset to the policy every N steps (as in
DeepSeek-R1's RL, sec. 2.2.2 of the R1 report); μ = 1 by default, where old log-probs equal the current
ones (ratio 1) and need no extra forward pass.

RL for all scenarios (R1 sec. 2.3.4): with `task.mix`, general prompts join the reasoning task; step 2
then routes rewards (`ponder/rewards/routing.py`): rule rewards for reasoning groups, reward models
(`reward.models`, one batched call per model per rollout) for general groups, switched on, with the
general prompts themselves, only for the last `reward.models_last_steps` steps.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Any

import torch

from ponder.algos import (
    advantages_with_unscorable,
    entropy_from_logits,
    policy_loss,
    sampler_gap,
    token_logprobs,
    truncated_importance_weights,
)
from ponder.algos.shaping import overlong_penalty
from ponder.config import Config, ConfigError, dump_toml
from ponder.data.tasks import Item, build_task, task_from_config
from ponder.data.templates import prompt_ids
from ponder.evaluate import evaluate_items
from ponder.evaluate.metrics import has_reflection
from ponder.model import copy_for_reference, load_model, pick_device, save_checkpoint
from ponder.report import collapse_warning
from ponder.rewards.reward_model import RewardModelScorer
from ponder.rewards.routing import GENERAL, PreferenceModel, RoutedRewards, kind_of, preference_active
from ponder.rollout import Completion, Generator, HFGenerator
from ponder.rollout.engine.model import unsupported_reason
from ponder.rollout.factory import make_generator
from ponder.rollout.vllm import VLLMGenerator, _vllm
from ponder.train import checkpoint
from ponder.train.dist import current_ranks, reduce_mean, shard_count, sum_counts, sum_gradients
from ponder.train.metrics import JsonlWriter, StepProgress, truncate_jsonl
from ponder.train.optim import build_optimizer, build_scheduler
from ponder.train.packing import Packed, completion_logits, pack

# Logged every step even when not part of the reward. "correct" (derived from accuracy_lenient) counts a
# response as right when its answer block is right or, with no answer tag at all, its last number is.
ALWAYS_LOGGED = ("accuracy", "accuracy_lenient", "format")


@dataclass
class Batch:
    """One step's experience: G completions for each kept item, scored, with advantages."""

    items: list[Item]
    completions: list[Completion]  # (B*G,), a group's samples contiguous
    scores: list[dict[str, float]]  # per completion: each reward's raw value and "total"
    advantages_N: torch.Tensor
    prompts_drawn: int
    groups_dropped: int
    general_on: bool = True  # whether general prompts (and their reward models) were on for this step


class GRPOTrainer:
    """Owns the policy, reference, optimizer, data stream and run directory of one GRPO run."""

    def __init__(self, cfg: Config, run_dir: Path, resume_from: Path | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        _check_reward_models(cfg)  # a missing reward-model directory fails before anything loads
        self.ranks = current_ranks()
        if cfg.run.threads:
            torch.set_num_threads(cfg.run.threads)
        self.device = pick_device(cfg.model.device)
        source = str(resume_from) if resume_from else cfg.model.name
        self.model, self.tokenizer = load_model(source, dtype=cfg.model.dtype, device=self.device)
        if cfg.model.attention != "default":
            self.model.set_attn_implementation(cfg.model.attention)
        if cfg.model.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.model.train()
        self.ref = self._reference(resume_from) if cfg.grpo.beta > 0 else None
        self.autocast = {"none": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[
            cfg.model.autocast
        ]
        self.task = task_from_config(cfg.task)  # with task.mix: a Mixture tagging items by kind
        self.eval_task = self._eval_task()
        self.generator = self._generator()
        self.rewards = RoutedRewards(
            cfg.reward.weights,
            cfg.reward.general_weights,
            self._preference_models(),
            ALWAYS_LOGGED,
            cfg.reward.workers,
        )
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.grpo.steps, cfg.optim)
        self.step, self.data_position = 0, 0
        if resume_from:
            self._restore(resume_from)
        self.stream = self.task.items(cfg.run.seed, self.ranks.rank, self.ranks.world)
        for _ in range(self.data_position):  # same data order as an uninterrupted run
            next(self.stream)
        self.eval_items = self._eval_items()

    # ------------------------------------------------------------------------------------ the loop

    def train(self) -> Path:
        """Run until `grpo.steps`, logging and checkpointing (rank 0 only); returns the run directory."""
        cfg = self.cfg
        logs = self._open_logs() if self.ranks.is_main else {}
        collapsed = False
        try:
            if self.step == 0:
                self._evaluate(logs)
            with StepProgress(cfg.grpo.steps, self.step, cfg.run.progress and self.ranks.is_main) as progress:
                while self.step < cfg.grpo.steps:
                    row, examples = self.train_step()  # every rank: collectives inside
                    progress.update(row)
                    if not logs:
                        continue
                    logs["metrics"].write(row)
                    collapsed = collapse_warning(row, collapsed)
                    for example in examples:
                        logs["samples"].write(example)
                    last = self.step == cfg.grpo.steps
                    if (cfg.eval.every and self.step % cfg.eval.every == 0) or last:
                        self._evaluate(logs)
                    if cfg.run.save_every and (self.step % cfg.run.save_every == 0 or last):
                        self.save()
        finally:
            for writer in logs.values():
                writer.close()
        return self.run_dir

    def _open_logs(self) -> dict[str, JsonlWriter]:
        """The run directory's config and JSON-lines logs; rows after a resumed checkpoint are dropped."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.toml").write_text(dump_toml(self.cfg))
        logs = {}
        for name in ("metrics", "samples", "eval"):
            truncate_jsonl(self.run_dir / f"{name}.jsonl", self.step)
            logs[name] = JsonlWriter(self.run_dir / f"{name}.jsonl")
        return logs

    def train_step(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Collect one batch, update the policy, and return (metrics row, sample rows)."""
        t0 = time.perf_counter()
        batch, t_gen, t_reward = self.collect()
        t1 = time.perf_counter()
        stats = self.update(batch) if batch.completions else {}
        self.step += 1
        reset = self.cfg.grpo.ref_reset_every
        if self.ref is not None and reset and self.step % reset == 0:
            self.ref.load_state_dict(self.model.state_dict())
        timing = {"time_gen": t_gen, "time_reward": t_reward, "time_train": time.perf_counter() - t1}
        timing["time_step"] = time.perf_counter() - t0
        row = reduce_mean({**self._batch_metrics(batch), **stats, **timing}, self.ranks)
        return {"step": self.step, **_means(row)}, self._examples(batch)

    # ------------------------------------------------------------------------------------ rollout

    def collect(self) -> tuple[Batch, float, float]:
        """Sample and score B groups; with dynamic sampling, refill groups whose rewards were all equal."""
        cfg = self.cfg.grpo
        want = shard_count(cfg.prompts_per_step, self.ranks)
        kept: list[tuple[Item, list[Completion], list[dict[str, float]]]] = []
        drawn = dropped = 0
        t_gen = t_reward = 0.0
        rounds = 1 + (cfg.max_refills if cfg.dynamic_sampling else 0)
        general_on = self._general_on()
        for attempt in range(rounds):
            items = self._draw(want - len(kept), general_on)
            drawn += len(items)
            t0 = time.perf_counter()
            prompts = [ids for item in items for ids in [self._encode(item)] * cfg.group_size]
            seed = self.cfg.run.seed * 1_000_003 + self.step * 97 + attempt + 7919 * self.ranks.rank
            completions = self.generator.generate(prompts, self.cfg.sampling, seed)
            t1 = time.perf_counter()
            scores = self._score(_repeat(items, cfg.group_size), completions)
            t_gen, t_reward = t_gen + t1 - t0, t_reward + time.perf_counter() - t1
            for i, item in enumerate(items):
                group = slice(i * cfg.group_size, (i + 1) * cfg.group_size)
                totals = [s["total"] for s in scores[group] if not math.isnan(s["total"])]
                if cfg.dynamic_sampling and (len(totals) < 2 or max(totals) == min(totals)):
                    dropped += 1
                    continue
                kept.append((item, completions[group], scores[group]))
            if len(kept) >= want:
                break
        kept = kept[:want]
        completions = [c for _, group, _ in kept for c in group]
        scores = [s for _, _, group in kept for s in group]
        rewards_N = torch.tensor([s["total"] for s in scores], dtype=torch.float32)
        advantages_N = (
            advantages_with_unscorable(cfg.advantage, rewards_N, cfg.group_size) if scores else rewards_N
        )
        batch = Batch([k[0] for k in kept], completions, scores, advantages_N, drawn, dropped, general_on)
        self._check_unscorable(rewards_N)
        return batch, t_gen, t_reward

    def _check_unscorable(self, rewards_N: torch.Tensor) -> None:
        share = float(torch.isnan(rewards_N).float().mean()) if rewards_N.numel() else 0.0
        if share > self.cfg.reward.max_unscorable:
            raise RuntimeError(
                f"step {self.step + 1}: {share:.0%} of samples were unscorable (verifier timeouts or "
                f"crashes), more than reward.max_unscorable = {self.cfg.reward.max_unscorable}; stopping. "
                f"Resume with --resume {self.run_dir} once the verifier is fixed."
            )

    def _general_on(self) -> bool:
        """Whether the step being collected draws general prompts (`reward.models_last_steps`)."""
        r = self.cfg.reward
        return preference_active(self.step + 1, self.cfg.grpo.steps, r.models_last_steps)

    def _draw(self, n: int, general_on: bool) -> list[Item]:
        """The stream's next `n` items; while general prompts are off, general items are skipped (their
        positions still count in `data_position`, so a resumed run replays the same stream)."""
        items: list[Item] = []
        while len(items) < n:
            item = next(self.stream)
            self.data_position += 1
            if general_on or kind_of(item.ref) != GENERAL:
                items.append(item)
        return items

    def _encode(self, item: Item) -> list[int]:
        prompt = self.cfg.prompt
        if kind_of(item.ref) == GENERAL:  # prompt.instruction is written for reasoning questions
            prompt = replace(prompt, instruction="{question}")
        return prompt_ids(item.prompt, self.tokenizer, prompt)

    def _score(self, items: list[Item], completions: list[Completion]) -> list[dict[str, float]]:
        """Every completion's scores, routed by its item's kind (+ the DAPO overlong penalty)."""
        responses = [self.cfg.prompt.prefill + c.text for c in completions]
        scores = self.rewards.score([item.ref for item in items], responses)
        g = self.cfg.grpo
        if g.truncation == "penalty":
            for s, c in zip(scores, completions, strict=True):
                s["overlong"] = overlong_penalty(
                    len(c.token_ids), self.cfg.sampling.max_new_tokens, g.overlong_buffer, g.overlong_penalty
                )
                s["total"] += s["overlong"]
        return scores

    def _preference_models(self) -> list[PreferenceModel]:
        """`reward.models` loaded onto the training device (one load per distinct model directory)."""
        loaded: dict[tuple, RewardModelScorer] = {}
        models = []
        for name, spec in self.cfg.reward.models.items():
            key = (spec.path, spec.batch_size, spec.max_length)
            if key not in loaded:
                loaded[key] = RewardModelScorer(
                    spec.path,
                    None,
                    batch_size=spec.batch_size,
                    device=self.device,
                    max_length=spec.max_length,
                )
            models.append(PreferenceModel(name, loaded[key], spec.target, spec.weight))
        return models

    # ------------------------------------------------------------------------------------ update

    def update(self, batch: Batch) -> dict[str, float]:
        """μ inner updates of the policy on one batch; returns loss statistics."""
        cfg = self.cfg.grpo
        drop_truncated = cfg.truncation == "mask"  # DAPO overlong filtering
        packed = pack(batch.completions, self.tokenizer.pad_token_id, self.device, drop_truncated)
        unscorable_N = torch.tensor([math.isnan(s["total"]) for s in batch.scores], device=self.device)
        packed.mask_NC[unscorable_N] = 0.0  # unscorable samples take no part in the loss
        mask_NC = packed.mask_NC
        adv_N = batch.advantages_N.to(self.device)
        n = mask_NC.shape[0]
        chunks = [slice(i, min(i + cfg.micro_batch_size, n)) for i in range(0, n, cfg.micro_batch_size)]
        counts = sum_counts({"total_seqs": n, "total_tokens": int(mask_NC.sum().item())}, self.ranks)
        totals = {**counts, "max_len": self.cfg.sampling.max_new_tokens}
        old = self._frozen_logprobs(self.model, packed, chunks) if cfg.inner_updates > 1 else None
        ref = self._frozen_logprobs(self.ref, packed, chunks) if self.ref is not None else None
        sampler_NC = packed.sampler_logp_NC
        if cfg.tis_cap and sampler_NC is None:
            raise RuntimeError(
                "grpo.tis_cap is set, but the generation backend returned no log-probs of the sampled "
                'tokens; use rollout.backend = "ponder" or "vllm", or set grpo.tis_cap = 0'
            )
        sums = {
            "loss": 0.0,
            "clip_sum": 0.0,
            "kl_sum": 0.0,
            "tokens": 0.0,
            "entropy_sum": 0.0,
            "grad_norm": 0.0,
            "skipped_updates": 0.0,
        }
        gaps: list[dict[str, torch.Tensor]] = []  # sampler vs trainer, first inner update, per micro-batch
        for inner in range(cfg.inner_updates):
            self.optimizer.zero_grad(set_to_none=True)
            for mb in chunks:
                logits, logp_BC = self._logprobs(self.model, packed.rows(mb))  # (b, C, V), (b, C)
                old_BC = old[mb] if old is not None else logp_BC.detach()
                adv = adv_N[mb]
                if sampler_NC is not None and inner == 0:
                    gaps.append(sampler_gap(old_BC, sampler_NC[mb], mask_NC[mb], cfg.tis_cap))
                if cfg.tis_cap:  # the sampler's log-probs are there (checked above)
                    w_BC = truncated_importance_weights(old_BC, sampler_NC[mb], cfg.tis_cap)
                    adv = adv.unsqueeze(-1) * w_BC
                loss, st = policy_loss(
                    cfg.loss,
                    logp_BC,
                    old_BC,
                    adv,
                    mask_NC[mb],
                    eps_low=cfg.eps_low,
                    eps_high=cfg.eps_high,
                    ref_logp_BT=ref[mb] if ref is not None else None,
                    beta=cfg.beta,
                    kl=cfg.kl,
                    **totals,
                )
                loss.backward()
                with torch.no_grad():
                    ent = entropy_from_logits(logits, self.cfg.sampling.temperature)
                    sums["entropy_sum"] += float((ent * mask_NC[mb]).sum())
                sums["loss"] += float(loss.detach())
                for key in ("clip_sum", "kl_sum", "tokens"):
                    sums[key] += float(st[key])
            sum_gradients(self.model, self.ranks)
            norm = torch.nn.utils.clip_grad_norm_(
                self.model.parameters(), self.cfg.optim.max_grad_norm or 1e9
            )
            if torch.isfinite(norm):
                sums["grad_norm"] += float(norm)
                self.optimizer.step()
            else:  # a non-finite gradient would poison the weights (and then sampling): skip this update
                sums["skipped_updates"] += 1
                self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        tokens = max(sums["tokens"], 1.0)
        mu = cfg.inner_updates
        out = {
            "loss": sums["loss"] / mu,
            "clip_frac": sums["clip_sum"] / tokens,
            "kl": sums["kl_sum"] / tokens,
            "entropy": sums["entropy_sum"] / tokens,
            "grad_norm": sums["grad_norm"] / max(1, mu - sums["skipped_updates"]),
            "skipped_updates": sums["skipped_updates"],
            "lr": self.scheduler.get_last_lr()[0],
        }
        if gaps:
            first = tokens / mu  # the gap is taken in the first inner update only
            total = {k: float(sum(g[k] for g in gaps)) for k in gaps[0]}
            out["rollout_logp_gap"] = total["abs_sum"] / first
            out["rollout_logp_gap_max"] = float(max(g["max"] for g in gaps))
            out["rollout_kl"] = total["sum"] / first
            if cfg.tis_cap:
                out["tis_capped_frac"] = total["capped"] / first
        return out

    def _logprobs(self, model: torch.nn.Module, mb: Packed) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (b, C, V), log-probs of the sampled tokens (b, C)) under `model`, in autocast."""
        with self._autocast():
            logits = completion_logits(model, mb)
        return logits, token_logprobs(logits, mb.targets_NC, self.cfg.sampling.temperature)

    def _autocast(self) -> torch.autocast:
        dtype = self.autocast or torch.float32
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.autocast is not None)

    def _frozen_logprobs(self, model: torch.nn.Module, packed: Packed, chunks: list[slice]) -> torch.Tensor:
        """Log-probs of the sampled tokens under a model without gradients: (N, C)."""
        with torch.no_grad():
            parts = [self._logprobs(model, packed.rows(mb))[1] for mb in chunks]
        return torch.cat(parts)

    # ------------------------------------------------------------------------------------ evaluation

    def _eval_task(self) -> Any:
        """`eval.task`, else the training task without `task.mix` (general prompts have no answer)."""
        ev, task = self.cfg.eval, self.cfg.task
        if ev.task:
            return build_task(ev.task, **ev.args)
        return build_task(task.name, **task.args) if task.mix else self.task

    def _eval_items(self) -> list[Item]:
        ev = self.cfg.eval
        if not ev.size:
            return []
        stream = self.eval_task.items(ev.seed)
        return [next(stream) for _ in range(ev.size)]

    def _evaluate(self, logs: dict[str, JsonlWriter]) -> None:
        if not self.eval_items or not logs:
            return
        ev = self.cfg.eval
        sampling = replace(
            self.cfg.sampling,
            temperature=ev.temperature,
            max_new_tokens=ev.max_new_tokens or self.cfg.sampling.max_new_tokens,
        )
        t0 = time.perf_counter()
        result = evaluate_items(
            self.generator, self.tokenizer, self.eval_items, self.cfg.prompt, sampling, ev.samples, ev.seed
        )
        rows = result.pop("rows")
        logs["eval"].write(
            {"step": self.step, **result, "time": time.perf_counter() - t0, "examples": rows[:3]}
        )

    # ------------------------------------------------------------------------------------ logging

    def _batch_metrics(self, batch: Batch) -> dict[str, float]:
        """This rank's metrics. A reward's mean is over the samples it scored (rule rewards: reasoning
        samples; reward models: general ones), kept as "sum:"/"count:" pairs until ranks are reduced."""
        n = max(1, len(batch.scores))
        r = self.cfg.reward
        configured = {*r.weights, *ALWAYS_LOGGED, *r.general_weights, *r.models}
        names = sorted(configured | {k for s in batch.scores for k in s} - {"total"})
        parts = {f"reward/{k}": [s[k] for s in batch.scores if k in s] for k in names}
        parts["correct"] = [float(s["accuracy_lenient"] > 0) for s in batch.scores if "accuracy_lenient" in s]
        row: dict[str, float] = {}
        for key, values in parts.items():
            kept = [v for v in values if not math.isnan(v)]
            row[f"sum:{key}"], row[f"count:{key}"] = sum(kept), len(kept)
        lengths = [len(c.token_ids) for c in batch.completions] or [0]
        firsts = [c.text for c in batch.completions[:: self.cfg.grpo.group_size]]
        totals = [s["total"] for s in batch.scores if not math.isnan(s["total"])] or [0.0]
        mean = sum(totals) / len(totals)
        general = [kind_of(item.ref) == GENERAL for item in batch.items]
        if r.models:
            row["preference_on"] = float(batch.general_on)
        return {
            "reward": mean,
            "reward_std": (sum((t - mean) ** 2 for t in totals) / len(totals)) ** 0.5,
            **row,
            "general_frac": sum(general) / max(1, len(general)),
            "response_len_mean": sum(lengths) / len(lengths),
            "response_len_max": max(lengths),
            "truncated_frac": sum(not c.finished for c in batch.completions) / n,
            # R1-Zero's "aha": the share of samples that stop to re-check ("wait", "let me verify", ...)
            "reflection_frac": sum(has_reflection(c.text) for c in batch.completions) / n,
            # distinct responses across prompts (each group's first sample): near 1/prompts when the policy
            # answers every question with one string; a group agreeing with itself does not lower it
            "distinct_frac": len(set(firsts)) / max(1, len(firsts)),
            "unscorable_frac": sum(math.isnan(s["total"]) for s in batch.scores) / n,
            "groups_kept": len(batch.items),
            "groups_dropped": batch.groups_dropped,
            "prompts_drawn": batch.prompts_drawn,
        }

    def _examples(self, batch: Batch) -> list[dict[str, Any]]:
        g = self.cfg.grpo.group_size
        out = []
        for i, item in enumerate(batch.items[: self.cfg.run.samples_per_step]):
            c, s = batch.completions[i * g], batch.scores[i * g]
            out.append(
                {
                    "step": self.step,
                    "id": item.id,
                    "prompt": item.prompt,
                    "kind": kind_of(item.ref),
                    "answer": item.ref.answer,
                    "response": self.cfg.prompt.prefill + c.text,
                    "scores": s,
                    "advantage": float(batch.advantages_N[i * g]),
                }
            )
        return out

    # ------------------------------------------------------------------------------------ checkpoints

    def save(self) -> Path:
        """Write `checkpoints/step-N/` (HF model + trainer state)."""
        state = checkpoint.Resumable(
            step=self.step,
            data_position=self.data_position,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            rng=checkpoint.rng_state(),
        )
        reset = self.ref is not None and self.cfg.grpo.ref_reset_every > 0
        return checkpoint.save(
            self.run_dir,
            self.model,
            self.tokenizer,
            state,
            self.cfg.run.keep_checkpoints,
            reference=self.ref if reset else None,
        )

    def _generator(self) -> Generator:
        """The `rollout.backend` generator over the policy's live weights (see `RolloutConfig`)."""
        r = self.cfg.rollout
        if r.backend == "hf":
            return HFGenerator(self.model, self.tokenizer, r.max_batch, self.autocast)
        if r.backend == "vllm":
            _vllm()  # its clear ImportError (pip install vllm) before a checkpoint is written for nothing
            # vLLM builds its model from an HF directory; later weight changes are pushed in memory.
            path = self.run_dir / f"vllm-init-rank{self.ranks.rank}"
            save_checkpoint(self.model, self.tokenizer, path)
            return VLLMGenerator(
                self.model, self.tokenizer, str(path), gpu_memory_utilization=r.gpu_memory_utilization
            )
        sequences = tokens = 0  # only needed to size the KV cache (num_blocks = 0)
        if not r.num_blocks and unsupported_reason(self.model) is None:
            # sized from the prompts the run starts with: its first steps' and the eval's
            ev, task, eval_task = self.cfg.eval, self.task, self.eval_task
            items = [*islice(task.items(self.cfg.run.seed), 256), *islice(eval_task.items(ev.seed), ev.size)]
            longest = max(len(self._encode(item)) for item in items)
            per_step = shard_count(self.cfg.grpo.prompts_per_step, self.ranks) * self.cfg.grpo.group_size
            per_eval = ev.size * (ev.samples if ev.temperature > 0 else 1)
            sequences = max(per_step, per_eval)
            tokens = longest + max(self.cfg.sampling.max_new_tokens, ev.max_new_tokens if ev.size else 0)
        # the engine (or transformers generate for other architectures), in the trainer's precision
        return make_generator(self.model, self.tokenizer, r, self.autocast, sequences, tokens)

    def _reference(self, resume_from: Path | None) -> torch.nn.Module:
        """The frozen KL reference: the starting model, or (resuming) the one the checkpoint stored."""
        if resume_from is None:
            return copy_for_reference(self.model)
        ref = copy_for_reference(self.model)
        if not checkpoint.load_reference(resume_from, ref):  # never reset: it is the starting model
            start, _ = load_model(self.cfg.model.name, dtype=self.cfg.model.dtype, device=self.device)
            ref.load_state_dict(start.state_dict())
        return ref

    def _restore(self, path: Path) -> None:
        state = checkpoint.load(path)
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        checkpoint.set_rng_state(state.rng)
        self.step, self.data_position = state.step, state.data_position


def _means(row: dict[str, float]) -> dict[str, float]:
    """`row` with each "sum:K"/"count:K" pair (summed, or averaged alike, over ranks) turned into K's mean
    (NaN when no sample had K); "accuracy" and "format" repeat their rewards' means up front."""
    means = {
        k[4:]: v / row[f"count:{k[4:]}"] if row[f"count:{k[4:]}"] else float("nan")
        for k, v in row.items()
        if k.startswith("sum:")
    }
    rest = {k: v for k, v in row.items() if not k.startswith(("sum:", "count:"))}
    head = {"reward": rest.pop("reward"), "reward_std": rest.pop("reward_std")}
    for name in ("accuracy", "format"):
        head[name] = means.get(f"reward/{name}", 0.0)
    head["correct"] = means.pop("correct")
    return {**head, **means, **rest}


def _repeat(items: list[Item], times: int) -> list[Item]:
    return [item for item in items for _ in range(times)]


def _check_reward_models(cfg: Config) -> None:
    """Each `reward.models` entry names a saved model directory and a name no logged score uses."""
    for name, spec in cfg.reward.models.items():
        key = f"reward.models.{name}"
        if name in (*ALWAYS_LOGGED, "overlong"):
            raise ConfigError(
                f"{key}: '{name}' is also a logged rule reward; name the reward model otherwise"
            )
        path = Path(spec.path)
        if not path.is_dir():
            raise ConfigError(f"{key}.path = '{spec.path}': no such directory (a saved reward model)")
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"{key}.path = '{spec.path}' has no config.json: not a saved transformers model"
            )
