"""The SFT stage: supervised fine-tuning on prompt/response examples (DeepSeek-R1's cold start, R1 report
sec. 2.3.1, and its second SFT round, sec. 2.3.3), as a building block a pipeline chains.

    from ponder.stages.sft import load_sft_config, run_sft
    run_sft(load_sft_config(None, ["--model.name=tiny", "--data.path=cold_start.jsonl"]), Path("runs/sft"))

Data: a JSONL file (or .json / .parquet / .csv, read by `ponder.data.files.read_records`), one example a row.
- format `chat`: `messages` [{role, content}, ...] rendered by the tokenizer's chat template; every assistant
  message is trained on (its content and the template's end-of-turn text), everything else is context. Rows
  with `prompt` / `response` fields instead become [system?, user, assistant].
- format `raw`: the text `system + "\n"` (when set) + prompt, then response + EOS, which are trained on:
  EOS is appended so the model learns to stop, as generation expects.
Each piece of text (context or trained turn) is tokenized on its own: the context's tokens are exactly those
of a prompt rendered and tokenized for generation, and a trained turn starts on a token boundary like a
sampled completion. Examples longer than `data.max_len` lose their end (counted as truncated); one with no
trained token left is dropped (counted).

Loss: token cross-entropy, mean over the trained tokens of one optimizer batch. Each micro-batch's summed loss
is divided by the whole batch's token count before backward, so gradient accumulation and packing give the
batch-mean gradient exactly. Packing (`train.packing`) puts several examples in one row of at most `max_len`
tokens (first-fit decreasing within the batch), positions restarting at 0 and a block-diagonal causal mask
(`train.packing.SequenceRows`): the logits equal unpacked ones. Unpacked, each micro-batch holds examples of
similar length (the batch sorted by length), which bounds padding; the batch's composition never changes.

Outputs in `run_dir`: config.toml, metrics.jsonl, eval.jsonl (held-out loss before training, every
`train.eval_every` steps and at the end), checkpoints/step-N/ (resumable, as in GRPO), model/ (the final
Hugging Face directory) and summary.json.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ponder.config import (
    ConfigError,
    ModelConfig,
    OptimConfig,
    build_dataclass,
    check_choice,
    check_positive,
    dump_toml,
    merge_tables,
    parse_overrides,
    read_toml,
    to_dict,
)
from ponder.data.files import DatasetError, read_records
from ponder.model import AUTOCAST_DTYPES, load_model, pick_device, save_checkpoint
from ponder.train import checkpoint
from ponder.train.metrics import JsonlWriter, StepProgress, read_jsonl, truncate_jsonl
from ponder.train.optim import build_optimizer, build_scheduler
from ponder.train.packing import SequenceRows, first_fit, layout

# --------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class SFTDataConfig:
    """Training examples and how they become tokens. `path` is required; `extra_paths` are more files of the
    same shape, appended (e.g. rejection-sampled data plus the cold-start data). The held-out set is
    `eval_path`, or a seeded `eval_fraction` of all training rows (neither: no held-out loss). `system` is
    prepended to every example (chat: as a system message when the row has none)."""

    path: str = ""
    extra_paths: list[str] = field(default_factory=list)
    format: str = "chat"
    messages_field: str = "messages"
    prompt_field: str = "prompt"
    response_field: str = "response"
    system: str = ""
    max_len: int = 1024
    eval_path: str = ""
    eval_fraction: float = 0.0

    def __post_init__(self) -> None:
        check_choice("data.format", self.format, ("chat", "raw"))
        check_positive("data.max_len", self.max_len)
        for key in ("messages_field", "prompt_field", "response_field"):
            if not getattr(self, key):
                raise ConfigError(f"data.{key} is empty; it must name a field of the data rows")
        if not 0 <= self.eval_fraction < 1:
            raise ConfigError(
                f"data.eval_fraction = {self.eval_fraction!r} is not allowed; it must be in [0, 1)"
            )
        if self.eval_path and self.eval_fraction:
            raise ConfigError("data.eval_path and data.eval_fraction are both set; use one held-out source")


@dataclass(frozen=True)
class SFTTrainConfig:
    """The loop. An optimizer batch takes `batch_size` examples and/or at most `batch_tokens` tokens (0: no
    limit; at least one example); it runs as micro-batches of `micro_batch_size` rows and/or at most
    `micro_batch_tokens` padded tokens (a row: one example, or with `packing` several). `eval_every` 0:
    held-out loss only before and after; `save_every` 0: no checkpoints (model/ is still written)."""

    epochs: int = 1
    batch_size: int = 16
    batch_tokens: int = 0
    micro_batch_size: int = 4
    micro_batch_tokens: int = 0
    packing: bool = False
    eval_every: int = 0
    seed: int = 0
    save_every: int = 50
    keep_checkpoints: int = 2
    progress: bool = True
    threads: int = 0

    def __post_init__(self) -> None:
        check_positive("train.epochs", self.epochs)
        check_positive("train.micro_batch_size", self.micro_batch_size)
        check_positive("train.keep_checkpoints", self.keep_checkpoints)
        for key in (
            "batch_size",
            "batch_tokens",
            "micro_batch_tokens",
            "eval_every",
            "save_every",
            "threads",
        ):
            check_positive(f"train.{key}", getattr(self, key), allow_zero=True)
        if not self.batch_size and not self.batch_tokens:
            raise ConfigError("train.batch_size and train.batch_tokens are both 0; set at least one")


@dataclass(frozen=True)
class SFTConfig:
    """A whole SFT run: `[model]` (name, dtype, autocast, ...), `[data]`, `[optim]` (lr, warm-up, schedule),
    `[train]`."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: SFTTrainConfig = field(default_factory=SFTTrainConfig)


def sft_config_from_dict(data: dict[str, Any]) -> SFTConfig:
    """Validate a nested dict (a recipe's tables) into an SFTConfig; unknown keys are errors."""
    return build_dataclass(SFTConfig, data, "")


def load_sft_config(recipe: str | Path | None = None, overrides: list[str] | None = None) -> SFTConfig:
    """A TOML recipe (or the defaults) plus `--section.key=value` overrides, like `config.load_config`."""
    data = merge_tables(to_dict(SFTConfig()), read_toml(recipe) if recipe else {}, depth=1)
    return sft_config_from_dict(merge_tables(data, parse_overrides(overrides or []), depth=3))


# --------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Example:
    """One tokenized example: `ids` in order, `trained[i]` when token i is a loss target."""

    ids: list[int]
    trained: list[bool]

    @property
    def targets(self) -> int:
        """Tokens that count in the loss (the first token has no context and never does)."""
        return sum(self.trained[1:])


@dataclass
class Dataset:
    """A file's usable examples, and how many rows were cut to `max_len` or dropped (nothing to train)."""

    examples: list[Example]
    truncated: int = 0
    dropped: int = 0


def load_examples(path: str | Path, cfg: SFTDataConfig, tokenizer) -> Dataset:
    """Read and tokenize every row of `path`; a bad row raises `DatasetError` naming the file and line."""
    if cfg.format == "chat" and not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            "data.format = 'chat' needs a tokenizer with a chat template; this model has none. "
            "Use data.format = 'raw' for base models."
        )
    data = Dataset([])
    for location, record in read_records(path):
        where = f"{path}: {location}"
        if not isinstance(record, dict):
            raise DatasetError(f"{where}: expected an object with fields, got {type(record).__name__}")
        pieces = (
            _chat_pieces(record, where, cfg, tokenizer)
            if cfg.format == "chat"
            else _raw_pieces(record, where, cfg)
        )
        ids, trained = [], []
        for text, train in pieces:
            tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
            ids += tokens
            trained += [train] * len(tokens)
        if cfg.format == "raw":
            ids.append(tokenizer.eos_token_id)
            trained.append(True)
        if len(ids) > cfg.max_len:
            ids, trained = ids[: cfg.max_len], trained[: cfg.max_len]
            data.truncated += 1
        example = Example(ids, trained)
        if example.targets:
            data.examples.append(example)
        else:
            data.dropped += 1
    if not data.examples:
        raise DatasetError(
            f"{path}: no usable example ({data.dropped} left no trained token within data.max_len)"
        )
    return data


def _text(record: dict[str, Any], key: str, where: str, what: str) -> str:
    if key not in record or record[key] is None:
        raise DatasetError(f"{where}: missing field {key!r}; available fields: {sorted(record)}")
    if not isinstance(record[key], str):
        raise DatasetError(f"{where}: field {key!r} must be a string, got {type(record[key]).__name__}")
    if what == "response" and not record[key].strip():
        raise DatasetError(f"{where}: empty response in field {key!r}")
    return record[key]


def _raw_pieces(record: dict[str, Any], where: str, cfg: SFTDataConfig) -> list[tuple[str, bool]]:
    prompt = _text(record, cfg.prompt_field, where, "prompt")
    response = _text(record, cfg.response_field, where, "response")
    head = f"{cfg.system}\n" if cfg.system else ""
    return [(head + prompt, False), (response, True)]


def _messages(record: dict[str, Any], where: str, cfg: SFTDataConfig) -> list[dict[str, str]]:
    if cfg.messages_field not in record:
        if cfg.prompt_field not in record:
            raise DatasetError(
                f"{where}: missing field {cfg.messages_field!r} (or {cfg.prompt_field!r} and "
                f"{cfg.response_field!r}); available fields: {sorted(record)}"
            )
        prompt = _text(record, cfg.prompt_field, where, "prompt")
        response = _text(record, cfg.response_field, where, "response")
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    else:
        messages = record[cfg.messages_field]
        if not isinstance(messages, list) or not messages:
            raise DatasetError(f"{where}: field {cfg.messages_field!r} must be a non-empty list of messages")
        for i, m in enumerate(messages):
            if not (
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            ):
                raise DatasetError(f"{where}: message {i} must be an object with string 'role' and 'content'")
            if m["role"] == "assistant" and not m["content"].strip():
                raise DatasetError(f"{where}: empty response (message {i}, role 'assistant')")
        if not any(m["role"] == "assistant" for m in messages):
            raise DatasetError(f"{where}: no assistant message; nothing to train on")
    if cfg.system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": cfg.system}, *messages]
    return messages


def _chat_pieces(record: dict[str, Any], where: str, cfg: SFTDataConfig, tokenizer) -> list[tuple[str, bool]]:
    """Split the rendered conversation into (text, trained) pieces: an assistant turn is what rendering it
    adds to the conversation before it rendered with the generation prompt (what generation continues)."""
    messages = _messages(record, where, cfg)
    if messages[0]["role"] == "assistant":
        raise DatasetError(f"{where}: the conversation starts with an assistant message; it needs a prompt")
    pieces, done = [], ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        after = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not (before.startswith(done) and after.startswith(before)):
            raise DatasetError(
                f"{where}: the chat template renders message {i} inconsistently with the turns before it "
                "(it rewrites earlier turns); cannot tell which tokens are the response"
            )
        pieces += [(before[len(done) :], False), (after[len(before) :], True)]
        done = after
    return [(text, train) for text, train in pieces if text]


def plan_batches(lengths: list[int], order: list[int], batch_size: int, batch_tokens: int) -> list[list[int]]:
    """Consecutive batches of `order`: each closes at `batch_size` examples or before exceeding
    `batch_tokens` tokens (0 turns a limit off; a batch always takes at least one example)."""
    batches: list[list[int]] = [[]]
    tokens = 0
    for i in order:
        full = batch_size and len(batches[-1]) >= batch_size
        over = batch_tokens and tokens + lengths[i] > batch_tokens
        if batches[-1] and (full or over):
            batches.append([])
            tokens = 0
        batches[-1].append(i)
        tokens += lengths[i]
    return batches


# --------------------------------------------------------------------------------------------- loss


def masked_nll(logits_NTV: torch.Tensor, ids_NT: torch.Tensor, targets_NT1: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of the next tokens where `targets_NT1` (N, T-1) is True: column t of the logits
    predicts `ids_NT[:, t+1]`. Computed in float32 whatever the autocast dtype."""
    logits_KV = logits_NTV[:, :-1][targets_NT1].float()
    labels_K = ids_NT[:, 1:][targets_NT1]
    return torch.nn.functional.cross_entropy(logits_KV, labels_K, reduction="sum")


def rows_nll(model: torch.nn.Module, rows: SequenceRows) -> tuple[torch.Tensor, int]:
    """(summed loss, target tokens) of one micro-batch."""
    mask = rows.attention_mask(model.config._attn_implementation or "eager")
    logits_NTV = model(input_ids=rows.ids_NT, attention_mask=mask, position_ids=rows.positions_NT).logits
    targets_NT1 = rows.targets()
    return masked_nll(logits_NTV, rows.ids_NT, targets_NT1), int(targets_NT1.sum())


def micro_batches(
    examples: list[Example], cfg: SFTTrainConfig, max_len: int, pad_id: int, device: torch.device
) -> list[SequenceRows]:
    """The rows of a batch (packed, or one example each), longest first, cut into micro-batches of at most
    `micro_batch_size` rows and `micro_batch_tokens` padded tokens (a micro-batch has at least one row)."""
    lengths = [len(e.ids) for e in examples]
    rows = first_fit(lengths, max_len) if cfg.packing else [[i] for i in range(len(examples))]
    rows.sort(key=lambda row: -sum(lengths[i] for i in row))
    groups: list[list[list[int]]] = []
    for row in rows:
        if groups and len(groups[-1]) < cfg.micro_batch_size:
            width = sum(lengths[i] for i in groups[-1][0])  # the widest row: rows come longest first
            if not cfg.micro_batch_tokens or (len(groups[-1]) + 1) * width <= cfg.micro_batch_tokens:
                groups[-1].append(row)
                continue
        groups.append([row])
    sequences = [(e.ids, e.trained) for e in examples]
    return [layout(sequences, group, pad_id, device) for group in groups]


# --------------------------------------------------------------------------------------------- the loop


class SFTTrainer:
    """Owns the model, optimizer, data and run directory of one SFT run."""

    def __init__(self, cfg: SFTConfig, run_dir: Path, resume: bool = False) -> None:
        if not cfg.data.path:
            raise ConfigError("data.path is not set; it must name a JSONL file of training examples")
        self.cfg, self.run_dir = cfg, Path(run_dir)
        last = checkpoint.latest(self.run_dir) if resume else None
        if not resume and (self.run_dir / "metrics.jsonl").exists():
            raise FileExistsError(
                f"{self.run_dir} already holds an SFT run; resume it or choose another directory"
            )
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.train.seed)
        self.device = pick_device(cfg.model.device)
        source = str(last) if last else cfg.model.name
        self.model, self.tokenizer = load_model(source, dtype=cfg.model.dtype, device=cfg.model.device)
        if cfg.model.attention != "default":
            self.model.set_attn_implementation(cfg.model.attention)
        if cfg.model.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.autocast = AUTOCAST_DTYPES[cfg.model.autocast]
        self.train_set, self.eval_set = self._datasets()
        self.plan = self._plan()
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, len(self.plan), cfg.optim)
        self.step = 0
        if last:
            self._restore(last)

    def _datasets(self) -> tuple[Dataset, Dataset | None]:
        data = self.cfg.data
        train = load_examples(data.path, data, self.tokenizer)
        for extra in data.extra_paths:
            more = load_examples(extra, data, self.tokenizer)
            train.examples += more.examples
            train.truncated += more.truncated
            train.dropped += more.dropped
        if data.eval_path:
            return train, load_examples(data.eval_path, data, self.tokenizer)
        if not data.eval_fraction:
            return train, None
        n = len(train.examples)
        held = max(1, round(data.eval_fraction * n))
        if held >= n:
            raise ConfigError(f"data.eval_fraction = {data.eval_fraction} leaves no training example of {n}")
        order = list(range(n))
        random.Random(self.cfg.train.seed).shuffle(order)
        chosen = set(order[:held])
        evals = [e for i, e in enumerate(train.examples) if i in chosen]
        train.examples = [e for i, e in enumerate(train.examples) if i not in chosen]
        return train, Dataset(evals)

    def _plan(self) -> list[list[int]]:
        """Every step's example indices: epoch e visits the examples in the order Random(seed + e) gives."""
        t = self.cfg.train
        lengths = [len(e.ids) for e in self.train_set.examples]
        plan, self.epoch_of_step = [], []
        for epoch in range(t.epochs):
            order = list(range(len(lengths)))
            random.Random(t.seed + epoch).shuffle(order)
            batches = plan_batches(lengths, order, t.batch_size, t.batch_tokens)
            plan += batches
            self.epoch_of_step += [epoch + 1] * len(batches)
        return plan

    def train(self) -> dict[str, Any]:
        """Run every planned step, logging and checkpointing; write model/ and summary.json."""
        t, started = self.cfg.train, time.perf_counter()
        logs = self._open_logs()
        try:
            if self.step == 0:
                self._evaluate(logs)
            with _Progress(len(self.plan), self.step, t.progress) as progress:
                while self.step < len(self.plan):
                    row = self.train_step()
                    progress.update(row)
                    logs["metrics"].write(row)
                    last = self.step == len(self.plan)
                    if (t.eval_every and self.step % t.eval_every == 0) or last:
                        self._evaluate(logs)
                    if t.save_every and (self.step % t.save_every == 0 or last):
                        self.save()
        finally:
            for writer in logs.values():
                writer.close()
        save_checkpoint(self.model, self.tokenizer, self.run_dir / "model")
        summary = self._summary(time.perf_counter() - started)
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def train_step(self) -> dict[str, Any]:
        """One optimizer step over the next planned batch; returns its metrics row."""
        t0 = time.perf_counter()
        examples = [self.train_set.examples[i] for i in self.plan[self.step]]
        tokens = sum(e.targets for e in examples)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss, rows = 0.0, 0
        for mb in micro_batches(examples, self.cfg.train, self.cfg.data.max_len, self._pad_id, self.device):
            with self._autocast():
                nll, _ = rows_nll(self.model, mb)
            (nll / tokens).backward()  # the batch mean, whatever the micro-batching
            loss, rows = loss + float(nll.detach()), rows + mb.ids_NT.shape[0]
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.max_grad_norm or 1e9)
        lr = self.optimizer.param_groups[0]["lr"]
        skipped = not torch.isfinite(norm)
        if not skipped:  # a non-finite gradient would poison the weights: skip this update
            self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return {
            "step": self.step,
            "epoch": self.epoch_of_step[self.step - 1],
            "loss": loss / tokens,
            "lr": lr,
            "tokens": tokens,
            "seq_tokens": sum(len(e.ids) for e in examples),
            "examples": len(examples),
            "rows": rows,
            "grad_norm": float(norm),
            "skipped": int(skipped),
            "time": time.perf_counter() - t0,
        }

    def eval_loss(self) -> tuple[float, int]:
        """(mean loss over the held-out trained tokens, their count), without gradients."""
        assert self.eval_set is not None
        self.model.eval()
        total, count = 0.0, 0
        t = self.cfg.train
        with torch.no_grad():
            for mb in micro_batches(
                self.eval_set.examples, t, self.cfg.data.max_len, self._pad_id, self.device
            ):
                with self._autocast():
                    nll, n = rows_nll(self.model, mb)
                total, count = total + float(nll), count + n
        return total / count, count

    def _evaluate(self, logs: dict[str, JsonlWriter]) -> None:
        if self.eval_set is None:
            return
        t0 = time.perf_counter()
        loss, tokens = self.eval_loss()
        row = {"step": self.step, "loss": loss, "tokens": tokens, "examples": len(self.eval_set.examples)}
        logs["eval"].write({**row, "time": time.perf_counter() - t0})

    @property
    def _pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    def _autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None
        )

    def _open_logs(self) -> dict[str, JsonlWriter]:
        """config.toml and the JSON-lines logs; rows after a resumed checkpoint are dropped."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.toml").write_text(dump_toml(self.cfg))
        names = ("metrics", "eval") if self.eval_set is not None else ("metrics",)
        logs = {}
        for name in names:
            if self.step == 0:  # a fresh start (also a resume that found no checkpoint)
                (self.run_dir / f"{name}.jsonl").unlink(missing_ok=True)
            truncate_jsonl(self.run_dir / f"{name}.jsonl", self.step)
            logs[name] = JsonlWriter(self.run_dir / f"{name}.jsonl")
        return logs

    def _summary(self, wall: float) -> dict[str, Any]:
        rows = read_jsonl(self.run_dir / "metrics.jsonl")
        evals = read_jsonl(self.run_dir / "eval.jsonl") if self.eval_set is not None else []
        return {
            "steps": self.step,
            "epochs": self.cfg.train.epochs,
            "examples": len(self.train_set.examples),
            "eval_examples": len(self.eval_set.examples) if self.eval_set else 0,
            "truncated": self.train_set.truncated,
            "dropped": self.train_set.dropped,
            "tokens": sum(r["tokens"] for r in rows),
            "train_loss_first": rows[0]["loss"] if rows else None,
            "train_loss_last": rows[-1]["loss"] if rows else None,
            "eval_loss_before": evals[0]["loss"] if evals else None,
            "eval_loss_after": evals[-1]["loss"] if evals else None,
            "time": sum(r["time"] for r in rows),
            "wall_time": wall,
            "model": str(self.run_dir / "model"),
        }

    def save(self) -> Path:
        """Write `checkpoints/step-N/` (HF model + optimizer, schedule, RNG, data position)."""
        state = checkpoint.Resumable(
            step=self.step,
            data_position=sum(len(b) for b in self.plan[: self.step]),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            rng=checkpoint.rng_state(),
        )
        return checkpoint.save(
            self.run_dir, self.model, self.tokenizer, state, self.cfg.train.keep_checkpoints
        )

    def _restore(self, path: Path) -> None:
        state = checkpoint.load(path)
        if state.step > len(self.plan) or state.data_position != sum(len(b) for b in self.plan[: state.step]):
            raise RuntimeError(
                f"{path} does not match this run's data plan (data, max_len, batching or epochs changed); "
                "resume with the config it was written with (config.toml in the run directory)"
            )
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        checkpoint.set_rng_state(state.rng)
        self.step = state.step


class _Progress(StepProgress):
    """GRPO's progress bar with SFT's numbers."""

    def update(self, row: dict[str, Any]) -> None:
        stats = f"loss {row['loss']:.4f}  lr {row['lr']:.2e}  {row['tokens']} tok  {row['time']:.2f}s/step"
        self.progress.update(self.task, advance=1, stats=stats)


def run_sft(cfg: SFTConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Train, writing everything into `run_dir`; `resume` continues from its last checkpoint (a fresh start
    when it has none). Returns the summary also written to `run_dir/summary.json`."""
    return SFTTrainer(cfg, run_dir, resume).train()
