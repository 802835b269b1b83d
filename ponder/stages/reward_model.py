"""The reward-model stage: a Bradley-Terry reward model trained on preference pairs.

The reward model is the causal LM's backbone under a linear head with one output (transformers'
`AutoModelForSequenceClassification`, num_labels = 1), read at the last token that is not padding. It learns
to rank the chosen response y_w of a pair above the rejected one y_l:

    loss = -log σ(r(x, y_w) - r(x, y_l)), averaged over pairs   (Bradley & Terry 1952; InstructGPT eq. 1)

DeepSeek-R1 (arXiv:2501.12948, sec. 2.3.4) scores helpfulness and harmlessness with reward models in its
last RL stage; this stage trains one. Its `run_dir/model/` loads as a reward with
`ponder.rewards.reward_model.RewardModelScorer`, and every text is rendered the way that scorer renders it
(the chat template with user = prompt and assistant = response), so the model is trained on what it will
score. In a pipeline recipe (`ponder train RECIPE`, see `ponder.pipeline`):

    [stages.reward_model]
    kind = "reward_model"
    model = "smollm2-135m"
    data = "../shared/data/hh_rlhf_harmless_test.jsonl"   # chosen / rejected: full HH-RLHF dialogues
    max_pairs = 1000
    max_len = 256

From Python: `run_reward_model(RewardModelConfig(data="pairs.jsonl"), Path("runs/rm"))`. A run directory
holds config.toml, metrics.jsonl (one row per optimizer step), eval.jsonl (held-out pairwise accuracy before
training, every `eval_every` steps and at the end), checkpoints/step-N/, model/ and summary.json.

Departures from InstructGPT: one pair per comparison instead of all K-choose-2 of a prompt's ranking (the
data sets we read hold pairs), and an optional score-centering term (`center_coef`, off by default):
coef · (r_w + r_l)², from Eisenstein et al. 2023 ("Helping or Herding?", as TRL's
`center_rewards_coefficient`), which keeps scores near zero without changing which response wins.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from ponder.config import ConfigError, OptimConfig, build_dataclass
from ponder.data.preferences import Pair, PreferenceDataError, read_pairs, split_pairs  # noqa: F401
from ponder.model import AUTOCAST_DTYPES, load_model, pick_device, resolve_dtype, save_checkpoint
from ponder.rewards.reward_model import RewardModelScorer
from ponder.train import checkpoint
from ponder.train.metrics import JsonlWriter, StepProgress, read_jsonl, truncate_jsonl
from ponder.train.optim import build_optimizer, build_scheduler

# Keys a resumed run may change: they do not change what is trained.
RESUMABLE_CHANGES = ("progress", "threads", "device", "save_every", "keep_checkpoints", "eval_batch_size")
# The files a run writes (a fresh run in a used directory replaces them, and nothing else).
RUN_FILES = ("metrics.jsonl", "eval.jsonl", "summary.json", "config.toml")


@dataclass(frozen=True)
class RewardModelConfig:
    """One reward-model run. Keys as in a `[stages.NAME]` table (kind = "reward_model").

    model: the base, any `load_model` name (alias, HF directory, .gguf, hub id, "tiny"); its causal-LM
    weights become the classifier's backbone and a new head (seeded by `seed`) is added. A directory that
    already holds a sequence classifier is trained further as it is.
    data: a JSONL file, one pair per line. Without `prompt_field`, `chosen_field` and `rejected_field` are
    whole dialogues in the HH-RLHF format ("\\n\\nHuman: ...\\n\\nAssistant: ..."): each is split at its last
    `assistant_marker` into prompt (before it, a leading `human_marker` dropped; earlier turns stay in
    the prompt as text) and response (after it). With `prompt_field`, every line has that field and the
    other two are the responses. `render` = "chat" reads (prompt, response) through the tokenizer's chat
    template; "plain" removes the template, so model and scorer read "prompt\\n\\nresponse".
    max_len: tokens per rendered text. `truncation` = "left" drops the start of a longer text, which keeps
    the end of the response where the score is read (as `RewardModelScorer` does); "right" drops the end.
    Truncated pairs are counted in the summary.
    eval_data: a held-out JSONL file in the same format; when empty, `eval_fraction` of `data`'s pairs
    (chosen by `seed`, whole pairs) is held out instead. `max_pairs` / `max_eval_pairs` (0 = all) keep a
    subset of the training / held-out pairs after the split.
    batch_size: pairs per optimizer step, run `micro_batch_size` pairs at a time with gradients
    accumulated; `epochs` passes over the training pairs, reshuffled (by `seed`) each epoch.
    lr, weight_decay, warmup_steps, schedule ("constant" | "cosine"), min_lr_ratio, max_grad_norm: AdamW
    and its schedule, as `ponder.config.OptimConfig`.
    train_layers: 0 trains every weight; k > 0 trains only the top k transformer blocks, the final norm and
    the head (embeddings and lower blocks frozen, so backward stops early: cheaper steps on a CPU).
    dtype: parameter precision; autocast = "bfloat16" runs forward and backward in bf16 over them.
    save_every: steps between checkpoints (0: none; the final model is always written).
    """

    model: str = "smollm2-135m"
    data: str = ""
    chosen_field: str = "chosen"
    rejected_field: str = "rejected"
    prompt_field: str = ""
    human_marker: str = "\n\nHuman:"
    assistant_marker: str = "\n\nAssistant:"
    render: str = "chat"
    max_len: int = 512
    truncation: str = "left"
    eval_data: str = ""
    eval_fraction: float = 0.1
    max_pairs: int = 0
    max_eval_pairs: int = 0
    epochs: int = 1
    batch_size: int = 16
    micro_batch_size: int = 4
    eval_batch_size: int = 16
    eval_every: int = 0
    center_coef: float = 0.0
    lr: float = 1e-5
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "constant"
    min_lr_ratio: float = 0.1
    max_grad_norm: float = 1.0
    train_layers: int = 0
    dtype: str = "float32"
    autocast: str = "none"
    device: str = "auto"
    gradient_checkpointing: bool = False
    threads: int = 0
    seed: int = 0
    save_every: int = 50
    keep_checkpoints: int = 2
    progress: bool = True

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"reward_model.{key} = {getattr(self, key)!r} is not allowed; {why}")

        if not self.data:
            raise ConfigError("reward_model.data is required: a JSONL file of preference pairs")
        if not self.chosen_field or not self.rejected_field or self.chosen_field == self.rejected_field:
            raise bad("rejected_field", "chosen and rejected fields must be two different names")
        for key, allowed in (
            ("render", ("chat", "plain")),
            ("truncation", ("left", "right")),
            ("dtype", ("float32", "bfloat16", "float16")),
            ("autocast", tuple(AUTOCAST_DTYPES)),
        ):
            if getattr(self, key) not in allowed:
                raise bad(key, f"choose one of {', '.join(map(repr, allowed))}")
        for key in ("max_len", "epochs", "batch_size", "micro_batch_size", "eval_batch_size"):
            if getattr(self, key) <= 0:
                raise bad(key, "it must be > 0")
        for key in (
            "max_pairs",
            "max_eval_pairs",
            "eval_every",
            "center_coef",
            "threads",
            "save_every",
            "train_layers",
        ):
            if getattr(self, key) < 0:
                raise bad(key, "it must be >= 0")
        if self.keep_checkpoints <= 0:
            raise bad("keep_checkpoints", "it must be > 0")
        if not 0 <= self.eval_fraction < 1:
            raise bad("eval_fraction", "it must be in [0, 1)")
        try:
            _ = self.optim  # builds, so validates, the optimizer keys
        except ConfigError as err:
            raise ConfigError(f"reward_model.{str(err).removeprefix('optim.')}") from None

    @property
    def optim(self) -> OptimConfig:
        """The optimizer keys as the shared `OptimConfig` (`build_optimizer`, `build_scheduler`)."""
        keys = ("lr", "weight_decay", "warmup_steps", "schedule", "min_lr_ratio", "max_grad_norm")
        return OptimConfig(**{key: getattr(self, key) for key in keys})


def reward_model_config(data: dict[str, Any], prefix: str = "reward_model.") -> RewardModelConfig:
    """Validate a table (a recipe's or `config.toml`'s) into a RewardModelConfig; errors name the key."""
    return build_dataclass(RewardModelConfig, data, prefix)


def dump_config(cfg: RewardModelConfig) -> str:
    """The config as TOML (every field is a scalar; JSON scalars are valid TOML values)."""
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in dataclasses.asdict(cfg).items())


# ------------------------------------------------------------------------------------------------ the loss


def bradley_terry_loss(
    chosen_B: torch.Tensor, rejected_B: torch.Tensor, center_coef: float = 0.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean over pairs of -log σ(r_w - r_l) + center_coef · (r_w + r_l)², and batch statistics.

    chosen_B, rejected_B: (B,) scores of each pair's chosen and rejected text. Stats: `accuracy` (share of
    pairs with r_w > r_l, a tie counting one half, so a constant model scores 0.5) and `margin`
    (mean r_w - r_l). Bradley-Terry as in InstructGPT (Ouyang et al. 2022, eq. 1) with K = 2; the
    centering term is Eisenstein et al. 2023's.
    """
    diff_B = chosen_B.float() - rejected_B.float()
    loss = -torch.nn.functional.logsigmoid(diff_B).mean()
    if center_coef:
        loss = loss + center_coef * ((chosen_B.float() + rejected_B.float()) ** 2).mean()
    with torch.no_grad():
        wins = (diff_B > 0).float() + 0.5 * (diff_B == 0).float()
        stats = {"accuracy": float(wins.mean()), "margin": float(diff_B.mean())}
    return loss, stats


@dataclass
class Encoded:
    """Token ids of each pair's chosen and rejected text, and how many pairs were truncated."""

    chosen: list[list[int]]
    rejected: list[list[int]]
    truncated: int

    def __len__(self) -> int:
        return len(self.chosen)


def encode_pairs(pairs: list[Pair], scorer: RewardModelScorer, cfg: RewardModelConfig) -> Encoded:
    """Render each side as `scorer` does, then cut to `max_len` from the `truncation` side."""
    out = Encoded([], [], 0)
    for pair in pairs:
        sides = [scorer.encode(*pair.chosen), scorer.encode(*pair.rejected)]  # untruncated: max_length huge
        out.truncated += any(len(ids) > cfg.max_len for ids in sides)
        cut = [ids[-cfg.max_len :] if cfg.truncation == "left" else ids[: cfg.max_len] for ids in sides]
        out.chosen.append(cut[0])
        out.rejected.append(cut[1])
    return out


# ------------------------------------------------------------------------------------------------ the model


def build_reward_model(cfg: RewardModelConfig, source: str | None = None) -> tuple[PreTrainedModel, Any]:
    """(classifier with num_labels = 1, tokenizer) from `source` (default `cfg.model`).

    A causal LM gets a fresh head on its backbone weights; a sequence-classifier directory (a checkpoint
    or an earlier reward model) loads as it is. The pad id is set on the config: transformers' classifier
    reads each row at its last token that is not pad, so right-padded batches score their real end.
    """
    source = source or cfg.model
    dtype = resolve_dtype(cfg.dtype)
    if _is_classifier_dir(source):
        model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(source)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    else:
        lm, tokenizer = load_model(source, dtype=cfg.dtype)  # sets the tokenizer's pad (eos if none)
        config = copy.deepcopy(lm.config)
        config.num_labels = 1
        config.architectures = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)  # the new head's initialisation
            model = AutoModelForSequenceClassification.from_config(config, dtype=dtype)
        getattr(model, model.base_model_prefix).load_state_dict(
            getattr(lm, lm.base_model_prefix).state_dict()
        )
        del lm
    model.config.pad_token_id = tokenizer.pad_token_id
    if cfg.render == "plain":
        tokenizer.chat_template = None  # saved without one, so RewardModelScorer renders plain text too
    return model, tokenizer


def _is_classifier_dir(source: str) -> bool:
    path = Path(source)
    if not (path / "config.json").is_file():
        return False
    architectures = AutoConfig.from_pretrained(path).architectures or []
    return any(name.endswith("ForSequenceClassification") for name in architectures)


def freeze_lower_layers(model: PreTrainedModel, train_layers: int) -> None:
    """Leave only the top `train_layers` blocks (plus final norm and head) trainable; 0 leaves all."""
    if not train_layers:
        return
    backbone = getattr(model, model.base_model_prefix)
    layers = getattr(backbone, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ConfigError(
            f"reward_model.train_layers needs a backbone with a `layers` list (Llama, Qwen, Mistral); "
            f"{type(backbone).__name__} has none"
        )
    if train_layers > len(layers):
        raise ConfigError(
            f"reward_model.train_layers = {train_layers} is not allowed; the model has {len(layers)} layers"
        )
    for module in (backbone.get_input_embeddings(), *layers[: len(layers) - train_layers]):
        module.requires_grad_(False)


def pair_scores(
    model: PreTrainedModel, rows: list[list[int]], pad_id: int, device: torch.device, autocast: Any
) -> torch.Tensor:
    """Scores (N,) of token-id rows, right-padded into one forward pass (with gradients if enabled)."""
    width = max(len(row) for row in rows)
    ids_NT = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask_NT = torch.zeros((len(rows), width), dtype=torch.long)
    for n, row in enumerate(rows):
        ids_NT[n, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask_NT[n, : len(row)] = 1
    with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
        logits_N1 = model(input_ids=ids_NT.to(device), attention_mask=mask_NT.to(device)).logits
    return logits_N1[:, 0].float()


def _by_length(data: Encoded, indices: list[int]) -> list[int]:
    """Longest pairs first: micro-batches of similar lengths waste little on padding."""
    return sorted(indices, key=lambda i: -max(len(data.chosen[i]), len(data.rejected[i])))


# ------------------------------------------------------------------------------------------------ the run


class RewardModelTrainer:
    """Model, optimizer, data and run directory of one reward-model run; `run_reward_model` drives it."""

    def __init__(self, cfg: RewardModelConfig, run_dir: Path, resume_from: Path | None = None) -> None:
        self.cfg, self.run_dir = cfg, Path(run_dir)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = pick_device(cfg.device)
        self.autocast = AUTOCAST_DTYPES[cfg.autocast]
        train, held_out = split_pairs(cfg)  # bad data fails before the (slow) model load
        self.model, self.tokenizer = build_reward_model(cfg, str(resume_from) if resume_from else None)
        self.model.to(self.device)
        freeze_lower_layers(self.model, cfg.train_layers)
        if cfg.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.pad_id = int(self.model.config.pad_token_id)
        # The scorer renders and tokenizes exactly as it will when it loads model/; no truncation here.
        scorer = RewardModelScorer(self.model, self.tokenizer, device=self.device, max_length=1 << 62)
        self.train_data = encode_pairs(train, scorer, cfg)
        self.eval_data = encode_pairs(held_out, scorer, cfg)
        self.steps_per_epoch = math.ceil(len(self.train_data) / cfg.batch_size)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, self.total_steps, cfg.optim)
        self.step = 0
        if resume_from is not None:
            state = checkpoint.load(resume_from)
            self.optimizer.load_state_dict(state.optimizer)
            self.scheduler.load_state_dict(state.scheduler)
            checkpoint.set_rng_state(state.rng)
            self.step = state.step

    def batch_indices(self, step: int) -> list[int]:
        """The training pairs of optimizer step `step` (0-based): epoch e is a permutation seeded by e, so a
        resumed run needs only the step to continue with the same data."""
        epoch, k = divmod(step, self.steps_per_epoch)
        seed = self.cfg.seed * 1_000_003 + epoch
        order = torch.randperm(len(self.train_data), generator=torch.Generator().manual_seed(seed)).tolist()
        return order[k * self.cfg.batch_size : (k + 1) * self.cfg.batch_size]

    def train_step(self) -> dict[str, Any]:
        """One optimizer step over a batch of pairs, in micro-batches; returns the metrics row."""
        t0 = time.perf_counter()
        cfg, data = self.cfg, self.train_data
        batch = _by_length(data, self.batch_indices(self.step))
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        sums = {"loss": 0.0, "accuracy": 0.0, "margin": 0.0, "chosen": 0.0, "rejected": 0.0, "tokens": 0}
        for start in range(0, len(batch), cfg.micro_batch_size):
            mb = batch[start : start + cfg.micro_batch_size]
            rows = [data.chosen[i] for i in mb] + [data.rejected[i] for i in mb]
            scores_2b = pair_scores(self.model, rows, self.pad_id, self.device, self.autocast)
            chosen_b, rejected_b = scores_2b[: len(mb)], scores_2b[len(mb) :]
            loss, stats = bradley_terry_loss(chosen_b, rejected_b, cfg.center_coef)
            share = len(mb) / len(batch)  # the batch loss is the mean over all its pairs
            (loss * share).backward()
            sums["loss"] += float(loss.detach()) * share
            for key in ("accuracy", "margin"):
                sums[key] += stats[key] * share
            sums["chosen"] += float(chosen_b.detach().sum()) / len(batch)
            sums["rejected"] += float(rejected_b.detach().sum()) / len(batch)
            sums["tokens"] += sum(len(row) for row in rows)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm or 1e9)
        skipped = not torch.isfinite(norm)
        if skipped:  # a non-finite gradient would poison the weights: skip this update
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.optimizer.step()
        lr = self.scheduler.get_last_lr()[0]  # the rate this step used
        self.scheduler.step()
        self.step += 1
        return {
            "step": self.step,
            "epoch": (self.step - 1) // self.steps_per_epoch,
            **{k: sums[k] for k in ("loss", "accuracy", "margin")},
            "score_chosen": sums["chosen"],
            "score_rejected": sums["rejected"],
            "grad_norm": float(norm),
            "skipped_update": int(skipped),
            "lr": lr,
            "pairs": len(batch),
            "tokens": sums["tokens"],
            "time_step": time.perf_counter() - t0,
        }

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Held-out pairwise accuracy (ties count one half), mean margin and mean loss."""
        t0 = time.perf_counter()
        self.model.eval()
        data, per = self.eval_data, max(1, self.cfg.eval_batch_size // 2)
        order = _by_length(data, list(range(len(data))))
        chosen, rejected = torch.zeros(len(data)), torch.zeros(len(data))
        for start in range(0, len(order), per):
            mb = order[start : start + per]
            rows = [data.chosen[i] for i in mb] + [data.rejected[i] for i in mb]
            scores = pair_scores(self.model, rows, self.pad_id, self.device, self.autocast).cpu()
            chosen[mb], rejected[mb] = scores[: len(mb)], scores[len(mb) :]
        loss, stats = bradley_terry_loss(chosen, rejected)
        return {
            "step": self.step,
            "pairs": len(data),
            "loss": float(loss),
            **stats,
            "time": time.perf_counter() - t0,
        }

    def save(self) -> Path:
        """`checkpoints/step-N/`: the classifier as an HF directory plus optimizer, scheduler and RNG."""
        state = checkpoint.Resumable(
            step=self.step,
            data_position=self.step * self.cfg.batch_size,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            rng=checkpoint.rng_state(),
        )
        return checkpoint.save(self.run_dir, self.model, self.tokenizer, state, self.cfg.keep_checkpoints)


class _Progress(StepProgress):
    """The shared progress bar with this stage's figures."""

    def update(self, row: dict[str, Any]) -> None:
        stats = (
            f"loss {row['loss']:.3f}  acc {row['accuracy']:.2f}  margin {row['margin']:.2f}  "
            f"{row['time_step']:.1f}s/step"
        )
        self.progress.update(self.task, advance=1, stats=stats)


def run_reward_model(cfg: RewardModelConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Train a reward model in `run_dir` and return its summary (also written to summary.json).

    resume: continue from the newest checkpoint in `run_dir` (from step 0 when there is none); the config
    must match the one the run started with, except for `RESUMABLE_CHANGES`. Without it, the run's own
    files and checkpoints in `run_dir` are replaced.
    """
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    last = checkpoint.latest(run_dir) if resume else None
    if last is not None:
        _check_same_config(cfg, run_dir)
    else:
        _clear_run(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(dump_config(cfg))
    trainer = RewardModelTrainer(cfg, run_dir, resume_from=last)
    logs = {}
    for name in ("metrics", "eval"):
        truncate_jsonl(run_dir / f"{name}.jsonl", trainer.step)
        logs[name] = JsonlWriter(run_dir / f"{name}.jsonl")
    try:
        _train(trainer, logs, t0)
    finally:
        for writer in logs.values():
            writer.close()
    save_checkpoint(trainer.model, trainer.tokenizer, run_dir / "model")
    summary = _summary(trainer, run_dir, time.perf_counter() - t0)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _train(trainer: RewardModelTrainer, logs: dict[str, JsonlWriter], t0: float) -> None:
    cfg, total = trainer.cfg, trainer.total_steps
    evaluate = len(trainer.eval_data) > 0
    if evaluate and trainer.step == 0:
        logs["eval"].write(trainer.evaluate())
    with _Progress(total, trainer.step, cfg.progress) as progress:
        while trainer.step < total:
            row = trainer.train_step()
            row["time"] = time.perf_counter() - t0
            logs["metrics"].write(row)
            progress.update(row)
            last = trainer.step == total
            if evaluate and (last or (cfg.eval_every and trainer.step % cfg.eval_every == 0)):
                logs["eval"].write(trainer.evaluate())
            if cfg.save_every and (last or trainer.step % cfg.save_every == 0):
                trainer.save()


def _summary(trainer: RewardModelTrainer, run_dir: Path, seconds: float) -> dict[str, Any]:
    evals = read_jsonl(run_dir / "eval.jsonl") if (run_dir / "eval.jsonl").exists() else []
    rows = read_jsonl(run_dir / "metrics.jsonl")
    first, final = (evals[0], evals[-1]) if evals else ({}, {})
    return {
        "eval_accuracy_before": first.get("accuracy"),
        "eval_accuracy_after": final.get("accuracy"),
        "eval_margin_before": first.get("margin"),
        "eval_margin_after": final.get("margin"),
        "train_pairs": len(trainer.train_data),
        "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "eval_pairs": len(trainer.eval_data),
        "train_truncated": trainer.train_data.truncated,
        "eval_truncated": trainer.eval_data.truncated,
        "steps": trainer.step,
        "train_loss_last": rows[-1]["loss"] if rows else None,
        "train_seconds": sum(r["time_step"] for r in rows),
        "seconds": seconds,
        "model": str(run_dir / "model"),
    }


def _check_same_config(cfg: RewardModelConfig, run_dir: Path) -> None:
    path = run_dir / "config.toml"
    if not path.exists():
        return
    saved = dataclasses.asdict(reward_model_config(tomllib.loads(path.read_text())))
    now = dataclasses.asdict(cfg)
    changed = [k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k]]
    if changed:
        k = changed[0]
        raise ConfigError(
            f"reward_model.{k} = {now[k]!r}, but the run in {run_dir} started with {saved[k]!r}; a resumed "
            f"run must keep its config (changed: {', '.join(changed)}); start a new run directory instead"
        )


def _clear_run(run_dir: Path) -> None:
    """A fresh run: the run files and checkpoints of an earlier one go (nothing else in the folder)."""
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for old in checkpoint.checkpoints(run_dir):
        shutil.rmtree(old)
