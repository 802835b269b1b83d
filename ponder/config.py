"""Typed, validated configuration: frozen dataclasses, TOML recipes and `--section.key=value` overrides.

A recipe is a TOML file whose tables are the sections below. Every value a user can set lives in exactly
one dataclass field; `load_config(recipe, overrides)` merges recipe and overrides, validates every key and
value, and returns a `Config`. Errors name the key, the bad value and the allowed values, and unknown keys
suggest the closest known one. `dump_toml(config)` writes the resolved config into the run directory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ponder.schema import (  # noqa: F401  (re-exported: stages and tests import them from here)
    ConfigError,
    build_dataclass,
    check_choice,
    check_positive,
    merge_tables,
    parse_overrides,
    read_toml,
    toml_value,
)

R1_ZERO_SYSTEM = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and "
    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> "
    "<answer> answer here </answer>."
)


@dataclass(frozen=True)
class ModelConfig:
    """Which model to train. `name`: alias (smollm2-135m), local HF dir, hub id, .gguf file, or `tiny`.

    `dtype` is the parameters' (and optimizer's) precision; `autocast` = "bfloat16" runs the forward and
    backward passes in bf16 mixed precision over float32 parameters (1.7x faster training on CPUs with AMX,
    measured on SmolLM2-135M; the usual choice on GPUs). `attention` picks transformers' attention
    implementation (`default` keeps the model's).
    """

    name: str = "smollm2-135m"
    dtype: str = "float32"
    autocast: str = "none"
    attention: str = "default"
    device: str = "auto"
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        check_choice("model.dtype", self.dtype, ("float32", "bfloat16", "float16"))
        check_choice("model.autocast", self.autocast, ("none", "bfloat16", "float16"))
        check_choice("model.attention", self.attention, ("default", "sdpa", "eager"))


TASK_NAMES = ("arithmetic", "countdown", "linear", "file")
MIX_TASK_NAMES = (*TASK_NAMES, "prompts")  # `prompts`: general prompts without answers (ponder/data/files.py)
KINDS = ("reasoning", "general")


@dataclass(frozen=True)
class MixEntry:
    """One extra source of prompts in `task.mix`: task `name` with `args`, drawn with probability `weight`.

    `kind` = "general" (prompts without a gold answer, scored by `reward.models` and `reward.general_weights`)
    or "reasoning" (scored by the rule rewards of `reward.weights`, like the main task); empty means
    "general" for the `prompts` task and "reasoning" for the others. Validated by `TaskConfig`.
    """

    name: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    weight: float = 0.0
    kind: str = ""

    def resolved_kind(self) -> str:
        return self.kind or ("general" if self.name == "prompts" else "reasoning")

    def validate(self, key: str) -> None:
        if not self.name:
            raise ConfigError(f"{key}.name is missing; choose one of {', '.join(map(repr, MIX_TASK_NAMES))}")
        check_choice(f"{key}.name", self.name, MIX_TASK_NAMES)
        if not 0 < self.weight < 1:
            raise ConfigError(f"{key}.weight = {self.weight!r} is not allowed; it must be in (0, 1)")
        if self.kind:
            check_choice(f"{key}.kind", self.kind, KINDS)


@dataclass(frozen=True)
class TaskConfig:
    """Where prompts come from: a built-in generator (arithmetic, countdown, linear) or a `file`.

    `args` are the task's own knobs (difficulty, path, field mapping); the task validates them.

    `mix` (DeepSeek-R1's RL for all scenarios, section 2.3.4) mixes other prompt sources into the stream:
    `mix = [{name = "prompts", args = {path = "self_instruct_seed_tasks.jsonl"}, weight = 0.3}]`. Each entry
    (see `MixEntry`) is drawn with probability `weight`, the main task with 1 - the sum of the weights
    (which must stay below 1). Task `prompts` reads general prompts without answers (self-instruct seed
    tasks, or prompt-only JSONL with a `prompt_field`). Item i of the stream picks its source with its own
    seeded draw, so a run is deterministic given `run.seed` and resumes exactly; every item carries
    `ref.meta["kind"]` ("reasoning" or "general") and `ref.meta["prompt"]` (the raw user prompt). General
    prompts are rendered without `prompt.instruction` (written for reasoning questions) and enter only
    while `reward.models_last_steps` allows. Evaluation uses the main task alone.
    """

    name: str = "arithmetic"
    args: dict[str, Any] = field(default_factory=dict)
    mix: list[MixEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_choice("task.name", self.name, TASK_NAMES)
        for i, entry in enumerate(self.mix):
            entry.validate(f"task.mix[{i}]")
        total = sum(entry.weight for entry in self.mix)
        if total >= 1:
            raise ConfigError(
                f"task.mix weights sum to {total:g}; they must sum to less than 1 (the main task "
                f"'{self.name}' is drawn with the rest)"
            )

    def has_general(self) -> bool:
        """Whether any `mix` entry draws general prompts."""
        return any(entry.resolved_kind() == "general" for entry in self.mix)


@dataclass(frozen=True)
class PromptConfig:
    """How a question becomes a prompt.

    mode `r1_zero`: the paper's plain User/Assistant template for base models; `chat`: the tokenizer's chat
    template with `system` as the system message. `prefill` is appended after the assistant turn starts
    (the R1-Zero template ends with "Assistant: <think>"), and counts as part of the response for rewards.
    `examples`: a JSONL file of worked examples (`prompt`, `response` fields, e.g. a `cot_data` stage's
    `data.jsonl`); its first `num_examples` rows go before the question as earlier turns (few-shot).
    """

    mode: str = "chat"
    system: str = R1_ZERO_SYSTEM
    instruction: str = "{question}"
    prefill: str = "<think>"
    examples: str = ""
    num_examples: int = 2

    def __post_init__(self) -> None:
        check_choice("prompt.mode", self.mode, ("r1_zero", "chat"))
        check_positive("prompt.num_examples", self.num_examples, allow_zero=True)
        if "{question}" not in self.instruction:
            raise ConfigError(f"prompt.instruction = {self.instruction!r} must contain '{{question}}'")


REWARD_MODEL_TARGETS = ("answer", "all")


@dataclass(frozen=True)
class RewardModelSpec:
    """One preference reward model in `reward.models`, e.g. `helpful = {path = "DIR", target = "answer"}`.

    `path`: a local directory with a sequence classifier of one label (a `reward_model` stage's output;
    its tokenizer is read from the same directory). `target`: what the model reads after the prompt,
    "answer" = the summary only (the `<answer>` block, else the text after `</think>`; R1 judges helpfulness
    on the summary) or "all" = the whole response, reasoning included (R1 judges harmlessness on all of it).
    `weight` multiplies the raw score in the total; `batch_size` pairs per forward pass; `max_length`
    tokens kept (the end). Validated by `RewardConfig`.
    """

    path: str = ""
    target: str = ""
    weight: float = 1.0
    batch_size: int = 16
    max_length: int = 2048

    def validate(self, key: str) -> None:
        if not self.path:
            raise ConfigError(f"{key}.path is missing; set it to the reward model's directory")
        if not self.target:
            raise ConfigError(
                f"{key}.target is missing; choose 'answer' (the summary only: helpfulness) or 'all' "
                "(the whole response: harmlessness)"
            )
        check_choice(f"{key}.target", self.target, REWARD_MODEL_TARGETS)
        check_positive(f"{key}.batch_size", self.batch_size)
        check_positive(f"{key}.max_length", self.max_length)


@dataclass(frozen=True)
class RewardConfig:
    """Weighted sum of registered rule rewards: `weights = {accuracy = 1.0, format = 0.5}`.

    `max_unscorable`: the run stops when a step's share of unscorable samples (a verifier timed out or
    crashed) exceeds it — those samples are left out of the baseline and the loss, never scored 0.
    `workers`: samples scored at once (threads; math checks and sandboxed code then run in parallel).

    Routing with general prompts in `task.mix` (DeepSeek-R1 section 2.3.4): `weights` score the reasoning
    prompts only. General prompts are scored by `models` (name -> `RewardModelSpec`):
    `models = {helpful = {path = "DIR", target = "answer"}, harmless = {path = "DIR2", target = "all"}}`,
    each model's raw score logged as `reward/<name>` and weighted into the total; the whole rollout's
    general samples go through one batched `score_batch` call per model. `general_weights` adds rule
    rewards that need no gold answer to general prompts (e.g. `{language_consistency = 0.1}`).
    `models_last_steps = N` > 0 switches the preference rewards on only for the last N of `grpo.steps`
    (the Nature version of R1: the last 400 of 1,700 steps, as longer training on a model reward risks
    reward hacking). Before that, general prompts are not drawn at all (there too, general data and the
    preference rewards enter together): the stream's general items are skipped, their positions still
    counted, so a resumed run replays the same stream. 0: on for every step.
    """

    weights: dict[str, float] = field(default_factory=lambda: {"accuracy": 1.0, "format": 0.5})
    max_unscorable: float = 0.1
    workers: int = 4
    models: dict[str, RewardModelSpec] = field(default_factory=dict)
    general_weights: dict[str, float] = field(default_factory=dict)
    models_last_steps: int = 0

    def __post_init__(self) -> None:
        check_positive("reward.workers", self.workers)
        if not 0 <= self.max_unscorable <= 1:
            raise ConfigError(
                f"reward.max_unscorable = {self.max_unscorable!r} is not allowed; it must be in [0, 1]"
            )
        if not self.weights:
            raise ConfigError("reward.weights is empty; name at least one reward, e.g. {accuracy = 1.0}")
        for name, spec in self.models.items():
            key = f"reward.models.{name}"
            if name == "total" or name in self.weights or name in self.general_weights:
                raise ConfigError(
                    f"{key}: the name '{name}' is taken (by 'total' or a rule reward in reward.weights / "
                    "reward.general_weights); name the reward model something else, e.g. 'helpful'"
                )
            spec.validate(key)
        check_positive("reward.models_last_steps", self.models_last_steps, allow_zero=True)
        if self.models_last_steps and not self.models:
            raise ConfigError(
                f"reward.models_last_steps = {self.models_last_steps} but reward.models is empty; "
                "name a reward model or set it to 0"
            )


@dataclass(frozen=True)
class SamplingConfig:
    """Rollout sampling. `max_new_tokens` is the maximum completion length; before `min_new_tokens` the
    end-of-sequence tokens cannot be sampled; generation also stops after any string in `stop` (kept)."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 128
    min_new_tokens: int = 0
    stop: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_positive("sampling.temperature", self.temperature, allow_zero=True)  # 0 = greedy (evaluation)
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"sampling.top_p = {self.top_p!r} is not allowed; it must be in (0, 1]")
        check_positive("sampling.top_k", self.top_k, allow_zero=True)
        check_positive("sampling.max_new_tokens", self.max_new_tokens)
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ConfigError(
                f"sampling.min_new_tokens = {self.min_new_tokens!r} is not allowed; it must be in "
                f"[0, sampling.max_new_tokens = {self.max_new_tokens}]"
            )
        if any(not s for s in self.stop):
            raise ConfigError(f"sampling.stop = {self.stop!r} is not allowed; stop strings must be non-empty")


@dataclass(frozen=True)
class RolloutConfig:
    """The generation backend. `ponder` (default): ponder's own engine (`ponder/rollout/engine/`), a paged KV
    cache with continuous batching; the samples of a GRPO group share their prompt's KV blocks and
    `prefix_cache` shares common prompt prefixes (chat template, system prompt) across prompts and calls
    until the weights change; prompts are prefilled in chunks of at most `max_prefill_tokens` tokens while
    other sequences decode; on a GPU, Triton paged attention and CUDA-graph decode steps (`attention`,
    `cuda_graphs`). It reads the trainer's weights in place and runs in `model.autocast`, like the trainer's
    forward. Llama-family models (Llama, SmolLM2, Qwen2/3). `hf`: transformers `generate()`, any model.
    `vllm`: an in-process vLLM (needs `pip install vllm`, a GPU; `gpu_memory_utilization` is its share).

    `max_batch` sequences run at once (all backends). The engine's KV cache holds `num_blocks` blocks of
    `block_size` tokens; `num_blocks = 0` (default) sizes it when the trainer starts (`kv_blocks`) for
    `max_batch` sequences (fewer if a step or the evaluation has fewer) of the longest of the run's first
    prompts plus `max_new_tokens`. A smaller cache still works: the engine then preempts and recomputes.
    """

    backend: str = "ponder"
    max_batch: int = 64
    num_blocks: int = 0
    block_size: int = 16
    prefix_cache: bool = True
    max_prefill_tokens: int = 8192
    attention: str = "auto"
    cuda_graphs: bool = True
    decode_splits: int = 1  # engine, Triton path: each decode attention's context in this many parts
    graph_sampling: bool = True  # engine, CUDA graphs: lm_head and sampling captured with the forward
    decode_steps: int = 8  # engine, CUDA graphs: decode steps per host round trip (needs graph_sampling)
    gpu_memory_utilization: float = 0.3

    def __post_init__(self) -> None:
        check_choice("rollout.backend", self.backend, ("hf", "ponder", "vllm"))
        check_choice("rollout.attention", self.attention, ("auto", "sdpa", "triton"))
        for key in ("max_batch", "block_size", "max_prefill_tokens", "decode_splits", "decode_steps"):
            check_positive(f"rollout.{key}", getattr(self, key))
        if self.decode_steps > 1 and not self.graph_sampling:
            raise ConfigError(
                f"rollout.decode_steps = {self.decode_steps} needs rollout.graph_sampling = true "
                "(set rollout.decode_steps = 1 to sample outside the graphs)"
            )
        if self.decode_splits & (self.decode_splits - 1):
            raise ConfigError(f"rollout.decode_splits = {self.decode_splits}: must be a power of two")
        check_positive("rollout.num_blocks", self.num_blocks, allow_zero=True)  # 0 = sized automatically
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(
                f"rollout.gpu_memory_utilization = {self.gpu_memory_utilization!r} is not allowed; "
                "it must be in (0, 1]"
            )

    def kv_blocks(self, sequences: int, tokens_per_sequence: int) -> int:
        """`num_blocks`, or when it is 0 enough blocks for min(`max_batch`, `sequences`) sequences of
        `tokens_per_sequence` tokens each, with no sharing counted (groups and prefixes share blocks, which
        leaves room for prompts longer than the ones measured)."""
        if self.num_blocks:
            return self.num_blocks
        per_sequence = -(-tokens_per_sequence // self.block_size)
        return min(self.max_batch, sequences) * per_sequence


@dataclass(frozen=True)
class GRPOConfig:
    """The GRPO algorithm: B prompts x G samples per step, advantages, loss, clipping, KL, μ updates."""

    steps: int = 40
    prompts_per_step: int = 8
    group_size: int = 8
    advantage: str = "grpo"
    loss: str = "grpo"
    eps_low: float = 0.2
    eps_high: float = 0.2
    beta: float = 0.0
    kl: str = "k3"
    ref_reset_every: int = 0
    inner_updates: int = 1
    micro_batch_size: int = 16
    truncation: str = "none"
    overlong_buffer: int = 32
    overlong_penalty: float = 1.0
    dynamic_sampling: bool = False
    max_refills: int = 3
    tis_cap: float = 0.0  # truncated importance sampling against the sampler's log-probs; 0 = off

    def __post_init__(self) -> None:
        for key in ("steps", "prompts_per_step", "group_size", "inner_updates", "micro_batch_size"):
            check_positive(f"grpo.{key}", getattr(self, key))
        if self.group_size < 2:
            raise ConfigError(f"grpo.group_size = {self.group_size} is not allowed; GRPO needs >= 2")
        check_choice("grpo.advantage", self.advantage, ("grpo", "dr_grpo", "rloo"))
        check_choice("grpo.loss", self.loss, ("grpo", "dapo", "dr_grpo"))
        check_choice("grpo.kl", self.kl, ("k1", "k2", "k3"))
        check_choice("grpo.truncation", self.truncation, ("none", "mask", "penalty"))
        for key in ("eps_low", "eps_high", "beta", "ref_reset_every", "overlong_buffer", "max_refills"):
            check_positive(f"grpo.{key}", getattr(self, key), allow_zero=True)
        if self.tis_cap != 0 and self.tis_cap < 1:
            raise ConfigError(
                f"grpo.tis_cap = {self.tis_cap!r} is not allowed; it must be 0 (off) or >= 1 (the largest "
                "importance weight a token may get)"
            )


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up then a constant or cosine schedule; global-norm gradient clipping."""

    lr: float = 1e-5
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.99
    warmup_steps: int = 0
    schedule: str = "constant"
    min_lr_ratio: float = 0.1
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        check_positive("optim.lr", self.lr)
        check_choice("optim.schedule", self.schedule, ("constant", "cosine"))
        check_positive("optim.warmup_steps", self.warmup_steps, allow_zero=True)
        check_positive("optim.max_grad_norm", self.max_grad_norm, allow_zero=True)


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation before training, every `every` steps (0: only before and after), and at the end.

    `size` items (0 turns evaluation off) from `task`/`args` (empty: the training task, drawn with `seed`, a
    stream apart from training's). `samples` per item at `temperature` (0 = greedy);
    `max_new_tokens` 0 means the training length.
    """

    size: int = 0
    every: int = 0
    samples: int = 1
    temperature: float = 0.0
    max_new_tokens: int = 0
    task: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    seed: int = 10_000_019

    def __post_init__(self) -> None:
        for key in ("size", "every", "max_new_tokens", "temperature"):
            check_positive(f"eval.{key}", getattr(self, key), allow_zero=True)
        check_positive("eval.samples", self.samples)
        if self.task:
            check_choice("eval.task", self.task, TASK_NAMES)


@dataclass(frozen=True)
class RunConfig:
    """Where and how a run is written. `dir` defaults to runs/<recipe>-<time>."""

    dir: str = ""
    seed: int = 0
    save_every: int = 20
    keep_checkpoints: int = 2
    samples_per_step: int = 4
    progress: bool = True
    threads: int = 0

    def __post_init__(self) -> None:
        check_positive("run.save_every", self.save_every, allow_zero=True)
        check_positive("run.keep_checkpoints", self.keep_checkpoints)
        check_positive("run.threads", self.threads, allow_zero=True)


@dataclass(frozen=True)
class Config:
    """A whole recipe."""

    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        if self.sampling.temperature == 0:
            raise ConfigError(
                "sampling.temperature = 0 is not allowed for training: the G samples of a group would be "
                "identical; use a value > 0 (eval.temperature = 0 gives greedy evaluation)"
            )
        general = self.task.has_general()
        if self.reward.models and not general:
            raise ConfigError(
                "reward.models score general prompts, but task.mix has no entry of kind 'general'; add one "
                "(e.g. {name = 'prompts', args = {path = ...}, weight = 0.3}) or remove reward.models"
            )
        if general and not (self.reward.models or self.reward.general_weights):
            raise ConfigError(
                "task.mix draws general prompts, but neither reward.models nor reward.general_weights "
                "scores them (reward.weights is for reasoning prompts only)"
            )
        if self.reward.models_last_steps > self.grpo.steps:
            raise ConfigError(
                f"reward.models_last_steps = {self.reward.models_last_steps} is not allowed; it must be at "
                f"most grpo.steps = {self.grpo.steps} (0 switches the reward models on for every step)"
            )


# --------------------------------------------------------------------------------------------- loading


def config_from_dict(data: dict[str, Any]) -> Config:
    """Validate a nested dict (recipe + overrides) into a Config."""
    return build_dataclass(Config, data, "")


def load_config(recipe: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a recipe file (or the defaults) and apply `--section.key=value` overrides."""
    # A recipe's table-valued fields (reward.weights, task.args) replace the defaults whole, so a recipe
    # says everything it means; overrides then change single keys inside them.
    data = merge_tables(to_dict(Config()), read_toml(recipe) if recipe else {}, depth=1)
    return config_from_dict(merge_tables(data, parse_overrides(overrides or []), depth=3))


def to_dict(config: Config) -> dict[str, Any]:
    """The config as plain nested dicts."""
    return dataclasses.asdict(config)


def dump_toml(config: Config) -> str:
    """Serialise a Config to TOML text (round-trips through `load_config`)."""
    lines: list[str] = []
    for section, values in to_dict(config).items():
        lines.append(f"[{section}]")
        tables = []
        for key, value in values.items():
            if isinstance(value, dict):
                tables.append((key, value))
            else:
                lines.append(f"{key} = {toml_value(value)}")
        for key, table in tables:
            lines.append(f"[{section}.{key}]")
            lines.extend(f"{k} = {toml_value(v)}" for k, v in table.items())
        lines.append("")
    return "\n".join(lines)
