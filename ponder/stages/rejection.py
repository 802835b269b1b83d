"""Rejection sampling: an RL checkpoint's verified, readable samples as an SFT dataset (R1 section 2.3.3).

    from ponder.stages.rejection import load_rejection_config, run_rejection
    stats = run_rejection(load_rejection_config("recipe.toml", ["--model.name=runs/x/checkpoints/step-40"]),
                          Path("runs/rs"))

What it does, as R1 describes it: sample n responses per prompt from the checkpoint; keep only the correct
ones, dropping "chain-of-thought with mixed languages, long paragraphs, and code blocks"; add non-reasoning
SFT data; the SFT stage then trains the *base* model on the result (R1: 600k reasoning + 200k
non-reasoning samples, two epochs). Steps:
  1. the first `rejection.prompts` distinct items of the task, rendered like GRPO's prompts;
  2. n samples each with ponder's engine (transformers generate for architectures it cannot run), or from
     a teacher behind an OpenAI-compatible server (`teacher`, see below);
  3. the filter pipeline of `ponder.data.filters` in `filters.order`, then the optional per-prompt cap;
  4. each kept response rewritten by `output.template` (reasoning, then the answer as a short summary);
  5. general rows from `mix.path` (self-instruct / alpaca / prompt-response records), `mix.ratio` per
     reasoning row (or a `mix.fraction` of all rows, or a fixed number `mix.rows`);
  6. `data.jsonl` (SFT-ready rows with provenance), `stats.json`, `rejected.jsonl`, `config.toml`.
Departures from R1: it also used a generative reward model (DeepSeek-V3) to judge prompts without a rule
check, and V3 to write CoTs for some non-reasoning prompts; here only rule-checked tasks are sampled and the
general rows are used as they are, without a CoT.

Distillation (R1 section 2.4: a strong model's verified samples, SFT alone makes a small model reason): the
samples come from `teacher = { url = "http://HOST:PORT/v1", model = "NAME" }` (`ponder.rollout.openai_api`)
instead of `model`: the teacher is sent the conversation (system prompt, then the user turn), applies its own
chat template, and its response is taken as written (`prompt.prefill` does not apply to a chat API).
"""

from __future__ import annotations

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ponder.config import (
    ConfigError,
    ModelConfig,
    PromptConfig,
    RolloutConfig,
    SamplingConfig,
    TaskConfig,
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
from ponder.data.filters import (
    FILTERS,
    Filter,
    PipelineResult,
    Rejected,
    Sample,
    make_filter,
    reformat,
    run_pipeline,
    split_response,
)
from ponder.data.tasks import Item, build_task
from ponder.data.templates import chat_messages, prompt_ids
from ponder.model import load_model, pick_device
from ponder.rollout import Generator
from ponder.rollout.factory import make_generator
from ponder.rollout.openai_api import ChatGenerator, TeacherConfig

DEFAULT_ORDER = (
    "malformed",
    "wrong_answer",
    "mixed_language",
    "long_paragraph",
    "code_in_reasoning",
    "duplicate",
)
DEFAULT_TEMPLATE = "<think>\n{reasoning}\n</think>\n\n{answer}"


@dataclass(frozen=True)
class RejectionSettings:
    """[rejection]: `prompts` distinct task items (0: every row of a `file` task), `samples_per_prompt`
    (R1's n) each; `workers` threads score samples (math-verify checks then run in parallel);
    `keep_rejected` writes the dropped samples and their reasons to rejected.jsonl. `dir` is where a command
    line writes the run (like GRPO's `run.dir`); `run_rejection` takes its directory as an argument."""

    dir: str = ""
    prompts: int = 64
    samples_per_prompt: int = 4
    seed: int = 0
    workers: int = 4
    threads: int = 0
    progress: bool = True
    keep_rejected: bool = True

    def __post_init__(self) -> None:
        check_positive("rejection.prompts", self.prompts, allow_zero=True)
        check_positive("rejection.samples_per_prompt", self.samples_per_prompt)
        check_positive("rejection.workers", self.workers)
        check_positive("rejection.threads", self.threads, allow_zero=True)


@dataclass(frozen=True)
class FilterConfig:
    """[filters]: the filters of `ponder.data.filters` applied in `order`, with parameters from `args`
    (e.g. `args = {mixed_language = {threshold = 0.9}, long_paragraph = {max_words = 300}}`), then at most
    `cap_per_prompt` samples per prompt (0: no cap), the shortest or the first (`cap_prefer`)."""

    order: list[str] = field(default_factory=lambda: list(DEFAULT_ORDER))
    args: dict[str, dict[str, Any]] = field(default_factory=dict)
    cap_per_prompt: int = 0
    cap_prefer: str = "shortest"

    def __post_init__(self) -> None:
        for name in self.order:
            if name == "cap_per_prompt":
                raise ConfigError("filters.order: set the cap with filters.cap_per_prompt, not in the order")
            if name not in FILTERS:
                allowed = sorted(n for n in FILTERS if n != "cap_per_prompt")
                raise ConfigError(f"filters.order: unknown filter {name!r}; choose from {allowed}")
        if "malformed" not in self.order:
            raise ConfigError(
                f"filters.order = {self.order!r} must include 'malformed': only <think>…</think><answer>…"
                "</answer> responses can be rewritten into output.template"
            )
        if len(set(self.order)) != len(self.order):
            raise ConfigError(f"filters.order = {self.order!r} names a filter twice")
        for name in self.args:
            if name not in self.order:
                raise ConfigError(
                    f"filters.args.{name}: filter {name!r} is not in filters.order {self.order}"
                )
        check_positive("filters.cap_per_prompt", self.cap_per_prompt, allow_zero=True)
        check_choice("filters.cap_prefer", self.cap_prefer, ("shortest", "first"))
        self.build()  # parameter errors surface when the config is made, not after sampling

    def build(self) -> list[Filter]:
        """The pipeline: the ordered filters with their arguments, and the cap last."""
        filters = []
        for name in self.order:
            try:
                filters.append(make_filter(name, **self.args.get(name, {})))
            except ValueError as err:
                raise ConfigError(f"filters.args.{name}: {err}") from None
        if self.cap_per_prompt:
            filters.append(make_filter("cap_per_prompt", k=self.cap_per_prompt, prefer=self.cap_prefer))
        return filters


@dataclass(frozen=True)
class MixConfig:
    """[mix]: non-reasoning SFT rows from `path` (JSONL/JSON/CSV/Parquet: self-instruct records with
    `instruction` and `instances` [{input, output}], alpaca `instruction`/`input`/`output`, or
    `prompt`/`response`). Either `ratio` general rows per kept reasoning row (R1: 200k / 600k = 1/3), a
    `fraction` of all rows (R1: 0.25), or a fixed number of `rows` (whatever was kept: a weak teacher's run
    still yields a dataset); never more rows than the file has (no repeats)."""

    path: str = ""
    ratio: float = 0.0
    fraction: float = 0.0
    rows: int = 0

    def __post_init__(self) -> None:
        check_positive("mix.ratio", self.ratio, allow_zero=True)
        check_positive("mix.rows", self.rows, allow_zero=True)
        if not 0 <= self.fraction < 1:
            raise ConfigError(f"mix.fraction = {self.fraction!r} is not allowed; it must be in [0, 1)")
        chosen = [f"mix.{k}" for k in ("ratio", "fraction", "rows") if getattr(self, k)]
        if len(chosen) > 1:
            raise ConfigError(f"{' and '.join(chosen)} are set; set one of mix.ratio, mix.fraction, mix.rows")
        if self.path and not (self.ratio or self.fraction or self.rows):
            raise ConfigError(
                f"mix.path = {self.path!r} is set but mix.ratio, mix.fraction and mix.rows are 0"
            )
        if not self.path and (self.ratio or self.fraction or self.rows):
            raise ConfigError("mix.ratio / mix.fraction / mix.rows are set but mix.path is empty")

    def count(self, reasoning_rows: int) -> int:
        """General rows wanted for `reasoning_rows` reasoning rows (rounded half up)."""
        if self.rows:
            return self.rows
        per_row = self.ratio or self.fraction / (1 - self.fraction)
        return int(per_row * reasoning_rows + 0.5)


@dataclass(frozen=True)
class OutputConfig:
    """[output]: `template` rewrites each kept `<think>R</think><answer>A</answer>` (its `{reasoning}` and
    `{answer}` are replaced); `style` "messages" ([{role, content}]) or "prompt_response"; `system` is
    added as the system message when non-empty; `shuffle` mixes reasoning and general rows (seeded)."""

    template: str = DEFAULT_TEMPLATE
    style: str = "messages"
    system: str = ""
    shuffle: bool = True

    def __post_init__(self) -> None:
        for slot in ("{reasoning}", "{answer}"):
            if slot not in self.template:
                raise ConfigError(f"output.template = {self.template!r} must contain {slot!r}")
        check_choice("output.style", self.style, ("messages", "prompt_response"))


@dataclass(frozen=True)
class RejectionConfig:
    """The whole stage. `model.name` is the checkpoint to sample (a run's checkpoints/step-N, an alias), or
    `teacher` an OpenAI-compatible server to sample instead (set one of them); `task`, `prompt` and
    `rollout` read as in GRPO recipes."""

    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    sampling: SamplingConfig = field(
        default_factory=lambda: SamplingConfig(temperature=0.6, top_p=0.95, max_new_tokens=512)
    )  # R1's evaluation sampling (section 3); it does not say what rejection sampling used
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    rejection: RejectionSettings = field(default_factory=RejectionSettings)
    filters: FilterConfig = field(default_factory=FilterConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        if self.rejection.prompts == 0 and self.task.name != "file":
            raise ConfigError(
                f"rejection.prompts = 0 (every row) needs task.name = 'file'; "
                f"task {self.task.name!r} never ends"
            )
        if self.sampling.temperature == 0 and self.rejection.samples_per_prompt > 1:
            raise ConfigError(
                "sampling.temperature = 0 is not allowed with rejection.samples_per_prompt > 1: greedy "
                "samples of one prompt are identical"
            )
        if self.rollout.backend == "vllm":
            raise ConfigError(
                "rollout.backend = 'vllm' is not supported by rejection sampling; use 'ponder' or 'hf'"
            )
        self.teacher.check_alone(self.model)


def load_rejection_config(
    recipe: str | Path | None = None, overrides: list[str] | None = None
) -> RejectionConfig:
    """A recipe file (or the defaults) with `--section.key=value` overrides, validated (as `load_config`)."""
    data = merge_tables(to_dict(RejectionConfig()), read_toml(recipe) if recipe else {}, depth=1)
    return build_dataclass(RejectionConfig, merge_tables(data, parse_overrides(overrides or []), depth=3), "")


# --------------------------------------------------------------------------------------------- the stage


def run_rejection(
    cfg: RejectionConfig, run_dir: Path, generator: Generator | ChatGenerator | None = None
) -> dict[str, Any]:
    """Sample, filter, mix and write `run_dir/data.jsonl` and `run_dir/stats.json`; returns the stats.

    `generator` replaces the one built over `cfg.model` or `cfg.teacher` (tests pass a scripted one); a
    local model's tokenizer still renders the prompts.
    """
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(dump_toml(cfg))
    if cfg.rejection.threads:
        torch.set_num_threads(cfg.rejection.threads)
    task = build_task(cfg.task.name, **cfg.task.args)
    items = draw_items(task, cfg.rejection.prompts, cfg.rejection.seed)
    generator, prompts = prepare_sampling(cfg, items, generator)
    samples = sample_all(cfg, generator, items, prompts)
    t1 = time.perf_counter()
    with ThreadPoolExecutor(cfg.rejection.workers, thread_name_prefix="filter") as pool:
        result = run_pipeline(samples, cfg.filters.build(), pool.map)
    t2 = time.perf_counter()
    by_id = {it.id: it for it in items}
    rows = [reasoning_row(cfg, by_id[s.prompt_id], s, task.describe()) for s in result.kept]
    general, available = general_rows(cfg, len(rows))
    data = rows + general
    if cfg.output.shuffle:
        random.Random(f"{cfg.rejection.seed}:shuffle").shuffle(data)
    _write_jsonl(run_dir / "data.jsonl", data)
    if cfg.rejection.keep_rejected:
        _write_jsonl(run_dir / "rejected.jsonl", [_rejected_row(r) for r in result.rejected])
    stats = summarize(cfg, items, samples, result, rows, general, available)
    stats["task"] = task.describe()
    if cfg.teacher.url and hasattr(generator, "usage"):  # requests made, tokens the server counted
        stats["teacher"] = {
            "url": cfg.teacher.url,
            "model": getattr(generator, "model", ""),
            **generator.usage,
        }
    stats["time"] = {"sample": t1 - t0, "filter": t2 - t1, "total": time.perf_counter() - t0}
    (run_dir / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    if cfg.rejection.progress:
        _print_summary(stats, run_dir)
    return stats


def draw_items(task: Any, count: int, seed: int) -> list[Item]:
    """The first `count` distinct items of the task's stream (all of a file's rows when `count` is 0, or
    when the file has fewer): a prompt repeated would only add duplicates."""
    items: list[Item] = []
    seen: set[str] = set()
    for item in task.items(seed):
        if item.id in seen or (count and len(items) == count):
            break
        seen.add(item.id)
        items.append(item)
    return items


def prepare_sampling(
    cfg: RejectionConfig, items: list[Item], generator: Generator | ChatGenerator | None = None
) -> tuple[Generator | ChatGenerator, list[Any]]:
    """The generator and the prompts it takes: conversations for a teacher over HTTP, token ids of the
    rendered prompts (`prompt.mode`, `prompt.prefill`) for a local model."""
    if cfg.teacher.url:
        return generator or cfg.teacher.build(), [chat_messages(it.prompt, cfg.prompt) for it in items]
    model, tokenizer = load_model(
        cfg.model.name, dtype=cfg.model.dtype, device=str(pick_device(cfg.model.device))
    )
    prompts = [prompt_ids(it.prompt, tokenizer, cfg.prompt) for it in items]
    return generator or build_generator(cfg, model, tokenizer, max(map(len, prompts))), prompts


def build_generator(
    cfg: RejectionConfig, model: torch.nn.Module, tokenizer, longest_prompt: int
) -> Generator:
    """Ponder's engine over `model`, or transformers generate when `rollout.backend = "hf"` or the engine
    cannot run the architecture (see `unsupported_reason`)."""
    r = cfg.rollout
    autocast = {"none": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.model.autocast]
    sequences = _chunk_prompts(cfg) * cfg.rejection.samples_per_prompt
    return make_generator(
        model, tokenizer, r, autocast, sequences, longest_prompt + cfg.sampling.max_new_tokens
    )


def _chunk_prompts(cfg: RejectionConfig) -> int:
    """Prompts per `generate` call: two engine batches' worth, so the progress bar moves and the batch
    stays full while a call's last sequences finish (a teacher: four rounds of concurrent requests)."""
    if cfg.teacher.url:
        return 4 * cfg.teacher.concurrency
    return max(1, 2 * cfg.rollout.max_batch // cfg.rejection.samples_per_prompt)


def sample_all(
    cfg: RejectionConfig, generator: Generator | ChatGenerator, items: list[Item], prompts: list[Any]
) -> list[Sample]:
    """n samples of every item, in item order then sample index, with a progress bar over prompts.
    `prompts` are token ids for a `Generator`, conversations for a `ChatGenerator` (a teacher)."""
    n, chunk = cfg.rejection.samples_per_prompt, _chunk_prompts(cfg)
    samples: list[Sample] = []
    columns = (
        TextColumn("[bold]sampling"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("prompts"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=not cfg.rejection.progress) as progress:
        bar = progress.add_task("sampling", total=len(items))
        for start in range(0, len(items), chunk):
            batch = items[start : start + chunk]
            repeated = [p for p in prompts[start : start + chunk] for _ in range(n)]
            seed = cfg.rejection.seed * 1_000_003 + start
            if isinstance(generator, ChatGenerator):  # a chat API cannot prefill: the text is the whole turn
                completions, prefill = generator.generate_chat(repeated, cfg.sampling, seed), ""
            else:
                completions, prefill = generator.generate(repeated, cfg.sampling, seed), cfg.prompt.prefill
            for k, c in enumerate(completions):
                item = batch[k // n]
                response = prefill + c.text  # what the rewards judge: the whole assistant turn
                samples.append(Sample(item.id, k % n, response, item.ref, len(c.token_ids), c.finished))
            progress.advance(bar, len(batch))
    return samples


# --------------------------------------------------------------------------------------------- rows


def _messages(cfg: RejectionConfig, user: str, assistant: str) -> dict[str, Any]:
    if cfg.output.style == "prompt_response":
        return {
            "prompt": user,
            "response": assistant,
            **({"system": cfg.output.system} if cfg.output.system else {}),
        }
    system = [{"role": "system", "content": cfg.output.system}] if cfg.output.system else []
    return {
        "messages": [*system, {"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    }


def reasoning_row(cfg: RejectionConfig, item: Item, sample: Sample, source: str) -> dict[str, Any]:
    """One SFT row from a kept sample: the user turn as the model saw it (without the system prompt, whose
    tag instructions the reformatted answer no longer follows), the reformatted response, provenance."""
    return {
        **_messages(
            cfg,
            cfg.prompt.instruction.format(question=item.prompt),
            reformat(sample.response, cfg.output.template),
        ),
        "kind": "reasoning",
        "prompt_id": item.id,
        "sample_index": sample.index,
        "model": cfg.teacher.source(cfg.model),
        "seed": cfg.rejection.seed,
        "source": source,
        "reference": item.ref.answer,
        "num_tokens": sample.num_tokens,
    }


def read_general(path: str) -> list[tuple[str, int, str, str]]:
    """(record id, instance index, prompt, response) of every usable general record in `path`.

    Self-instruct: `instruction` + `instances` [{input, output}], the prompt being the instruction, a blank
    line and the input (when there is one); alpaca: `instruction`, `input`, `output`; or `prompt`,
    `response`. A record of none of these shapes raises DatasetError naming the file and line.
    """
    out = []
    for location, record in read_records(path):
        where = f"{path}: {location}"
        if not isinstance(record, dict):
            raise DatasetError(f"{where}: expected an object, got {type(record).__name__}")
        rid = str(record.get("id", location.replace(" ", "-")))
        if "instances" in record and "instruction" in record:
            pairs = [(inst.get("input", ""), inst.get("output", "")) for inst in record["instances"]]
            out += [(rid, j, _join(record["instruction"], x), y) for j, (x, y) in enumerate(pairs)]
        elif "instruction" in record and "output" in record:
            out.append((rid, 0, _join(record["instruction"], record.get("input", "")), record["output"]))
        elif "prompt" in record and "response" in record:
            out.append((rid, 0, str(record["prompt"]), str(record["response"])))
        else:
            raise DatasetError(
                f"{where}: a general record needs instruction + instances, instruction + output, or "
                f"prompt + response; it has {sorted(record)}"
            )
    return [(rid, j, p.strip(), str(r).strip()) for rid, j, p, r in out if p.strip() and str(r).strip()]


def _join(instruction: str, extra: str) -> str:
    return f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction


def general_rows(cfg: RejectionConfig, reasoning_rows: int) -> tuple[list[dict[str, Any]], int]:
    """(the general rows to mix in, how many the file offers): a seeded draw without repeats."""
    if not cfg.mix.path:
        return [], 0
    records = read_general(cfg.mix.path)
    random.Random(f"{cfg.rejection.seed}:mix").shuffle(records)
    chosen = records[: cfg.mix.count(reasoning_rows)]
    rows = [
        {
            **_messages(cfg, prompt, response),
            "kind": "general",
            "prompt_id": rid,
            "sample_index": j,
            "model": None,  # written by people, not sampled
            "seed": cfg.rejection.seed,
            "source": cfg.mix.path,
        }
        for rid, j, prompt, response in chosen
    ]
    return rows, len(records)


def _rejected_row(r: Rejected) -> dict[str, Any]:
    s = r.sample
    return {
        "prompt_id": s.prompt_id,
        "sample_index": s.index,
        "filter": r.filter,
        "reason": r.reason,
        "response": s.response,
    }


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".jsonl.tmp")  # a crash never leaves a half-written dataset under the real name
    tmp.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    tmp.replace(path)


# --------------------------------------------------------------------------------------------- stats


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def summarize(
    cfg: RejectionConfig,
    items: list[Item],
    samples: list[Sample],
    result: PipelineResult,
    rows: list[dict[str, Any]],
    general: list[dict[str, Any]],
    available: int,
) -> dict[str, Any]:
    """Counts (generated = kept + sum of removed), per-prompt coverage and mean lengths."""
    per_prompt = {it.id: 0 for it in items}
    for s in result.kept:
        per_prompt[s.prompt_id] += 1
    histogram: dict[str, int] = {}
    for count in sorted(per_prompt.values()):
        histogram[str(count)] = histogram.get(str(count), 0) + 1
    covered = sum(c > 0 for c in per_prompt.values())
    parts = [split_response(s.response) for s in result.kept]
    content = [_assistant(row) for row in rows]
    return {
        "model": cfg.teacher.source(cfg.model),
        "seed": cfg.rejection.seed,
        "prompts": len(items),
        "samples_per_prompt": cfg.rejection.samples_per_prompt,
        "generated": len(samples),
        "truncated": sum(not s.finished for s in samples),
        "removed": result.removed,
        "kept": len(result.kept),
        "general": len(general),
        "general_wanted": cfg.mix.count(len(rows)) if cfg.mix.path else 0,
        "general_available": available,
        "rows": len(rows) + len(general),
        "coverage": {
            "prompts_with_samples": covered,
            "share": covered / len(items) if items else 0.0,
            "kept_per_prompt": histogram,  # number of kept samples -> number of prompts
        },
        "mean_chars": {
            "generated": _mean([len(s.response) for s in samples]),
            "kept": _mean([len(s.response) for s in result.kept]),
            "kept_reasoning": _mean([len(p[0]) for p in parts if p]),
            "kept_answer": _mean([len(p[1]) for p in parts if p]),
            "reasoning_rows": _mean([len(c) for c in content]),
            "general_rows": _mean([len(_assistant(row)) for row in general]),
        },
        "mean_tokens": {
            "generated": _mean([s.num_tokens for s in samples]),
            "kept": _mean([s.num_tokens for s in result.kept]),
        },
    }


def _assistant(row: dict[str, Any]) -> str:
    return row["response"] if "response" in row else row["messages"][-1]["content"]


def _print_summary(stats: dict[str, Any], run_dir: Path) -> None:
    removed = ", ".join(f"{name} {n}" for name, n in stats["removed"].items())
    cover = stats["coverage"]
    print(
        f"rejection sampling: {stats['generated']} samples of {stats['prompts']} prompts; "
        f"removed: {removed}; "
        f"kept {stats['kept']} ({cover['prompts_with_samples']} prompts, {cover['share']:.0%}); "
        f"+{stats['general']} general rows -> {stats['rows']} rows in {run_dir / 'data.jsonl'}",
        flush=True,
    )
