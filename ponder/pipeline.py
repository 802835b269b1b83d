"""Multi-stage recipes (the DeepSeek-R1 pipeline): stages run in order, each in its own directory, cached.

A pipeline recipe has a `[pipeline]` table and one `[stages.NAME]` table per stage:

    [pipeline]
    stages = ["cold_start_data", "cold_start", "reasoning_rl", "rejection", "sft", "reward_model", "rl_all"]
    dir = "runs/r1"

    [stages.cold_start]
    kind = "sft"                      # grpo | sft | rejection | reward_model | cot_data | eval
    model = "smollm2-135m"
    data = "@cold_start_data:data"    # another stage's output

A string `@NAME` is stage NAME's model directory (`DIR/NAME/model`), `@NAME:data` its dataset
(`DIR/NAME/data.jsonl`); a stage may only refer to stages before it. Every stage kind writes those two
names when it produces a model or a dataset, a `summary.json`, and, once finished, `stage.json` with a hash
of its table, of the stages it refers to and of the files it reads. Running the recipe again skips a stage
whose hash is unchanged; `--from NAME` runs NAME and everything after it again. Stages never import each
other: this module is the only place that knows them all. The end prints (and writes `pipeline.json`) a
table of each stage's time and key figures.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder.config import ConfigError, build_dataclass, config_from_dict, merge_tables, read_toml, to_dict


@dataclass(frozen=True)
class StageKind:
    """One kind of stage: `build` validates its table into a config (before anything runs), `run` runs it
    in a directory and returns its summary."""

    build: Callable[[dict[str, Any], str, Path], Any]
    run: Callable[[Any, Path, bool], dict[str, Any]]


def _build_grpo(table: dict[str, Any], prefix: str, out: Path) -> Any:
    data = merge_tables(to_dict(config_from_dict({})), table, depth=1)
    return config_from_dict(merge_tables(data, {"run": {"dir": str(out)}}, depth=1))


def _run_grpo(cfg: Any, out: Path, resume: bool) -> dict[str, Any]:
    from ponder.model import save_checkpoint
    from ponder.stages.grpo import GRPOTrainer
    from ponder.train import checkpoint

    last = checkpoint.latest(out) if resume and (out / "config.toml").exists() else None
    if last is None and (out / "config.toml").exists():
        shutil.rmtree(out)  # a stale or unfinished run without a checkpoint: start clean
        out.mkdir(parents=True)
    trainer = GRPOTrainer(cfg, out, resume_from=last)
    trainer.train()
    save_checkpoint(trainer.model, trainer.tokenizer, out / "model")
    evals = _jsonl(out / "eval.jsonl")
    summary: dict[str, Any] = {"steps": cfg.grpo.steps}
    if evals:
        for key in ("correct", "accuracy", "format"):
            summary[f"eval_{key}_before"] = evals[0].get(key)
            summary[f"eval_{key}_after"] = evals[-1].get(key)
    rows = _jsonl(out / "metrics.jsonl")
    if rows:
        summary["reward_last"] = rows[-1].get("reward")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _dataclass_kind(module: str, config: str, runner: str, resumable: bool) -> StageKind:
    """A stage whose module offers a config dataclass and `runner(cfg, run_dir[, resume=])`."""

    def build(table: dict[str, Any], prefix: str, out: Path) -> Any:
        mod = __import__(module, fromlist=[config])
        return build_dataclass(getattr(mod, config), table, prefix)

    def run(cfg: Any, out: Path, resume: bool) -> dict[str, Any]:
        fn = getattr(__import__(module, fromlist=[runner]), runner)
        return fn(cfg, out, resume=resume) if resumable else fn(cfg, out)

    return StageKind(build, run)


KINDS: dict[str, StageKind] = {
    "grpo": StageKind(_build_grpo, _run_grpo),
    "sft": _dataclass_kind("ponder.stages.sft", "SFTConfig", "run_sft", resumable=True),
    "rejection": _dataclass_kind(
        "ponder.stages.rejection", "RejectionConfig", "run_rejection", resumable=False
    ),
    "reward_model": _dataclass_kind(
        "ponder.stages.reward_model", "RewardModelConfig", "run_reward_model", resumable=True
    ),
    "cot_data": _dataclass_kind("ponder.stages.cot_data", "CotDataConfig", "run_cot_data", resumable=False),
    "eval": _dataclass_kind("ponder.stages.eval", "EvalStageConfig", "run_eval", resumable=False),
}


@dataclass(frozen=True)
class Stage:
    name: str
    kind: str
    table: dict[str, Any]  # the stage's config, references unresolved


def parse(data: dict[str, Any]) -> tuple[Path | None, list[Stage]]:
    """The pipeline's directory (None: not set) and its stages, checked: kinds, names, references."""
    pipe = data.get("pipeline")
    if not isinstance(pipe, dict) or not isinstance(pipe.get("stages"), list) or not pipe["stages"]:
        raise ConfigError('a pipeline recipe needs [pipeline] with stages = ["name", ...]')
    unknown = set(pipe) - {"stages", "dir"}
    if unknown:
        raise ConfigError(f"unknown key 'pipeline.{sorted(unknown)[0]}'; known keys: stages, dir")
    tables = data.get("stages", {})
    extra = set(data) - {"pipeline", "stages"}
    if extra:
        raise ConfigError(
            f"unknown table [{sorted(extra)[0]}] in a pipeline recipe; stages go under [stages.NAME]"
        )
    stages: list[Stage] = []
    for name in pipe["stages"]:
        if name not in tables:
            raise ConfigError(f"pipeline.stages names '{name}' but there is no [stages.{name}] table")
        table = dict(tables[name])
        kind = table.pop("kind", None)
        if kind not in KINDS:
            raise ConfigError(
                f"stages.{name}.kind = {kind!r} is not allowed; it must be one of {sorted(KINDS)}"
            )
        earlier = {s.name for s in stages}
        for ref in _refs(table):
            target = ref[1:].split(":")[0]
            if target not in earlier:
                raise ConfigError(
                    f"stages.{name} refers to '{ref}', but '{target}' is not a stage before it "
                    f"(earlier stages: {sorted(earlier) or 'none'})"
                )
        stages.append(Stage(name, kind, table))
    unused = set(tables) - set(pipe["stages"])
    if unused:
        raise ConfigError(f"[stages.{sorted(unused)[0]}] is not listed in pipeline.stages")
    directory = pipe.get("dir")
    return (Path(directory) if directory else None), stages


def run_pipeline(data: dict[str, Any], root: Path, start_from: str | None = None) -> list[dict[str, Any]]:
    """Run (or skip, when cached) every stage; returns one summary row per stage and writes pipeline.json."""
    _, stages = parse(data)
    names = [s.name for s in stages]
    if start_from is not None and start_from not in names:
        raise ConfigError(f"--from {start_from}: no such stage; stages: {', '.join(names)}")
    configs = {}  # every stage's config is checked before the first one runs
    for stage in stages:
        try:
            configs[stage.name] = KINDS[stage.kind].build(
                _resolve(stage.table, root), f"stages.{stage.name}.", root / stage.name
            )
        except ConfigError as err:
            raise ConfigError(f"[stages.{stage.name}] ({stage.kind}): {err}") from None
    root.mkdir(parents=True, exist_ok=True)
    (root / "pipeline_recipe.json").write_text(json.dumps(data, indent=1, default=str))
    hashes: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    forced = False
    for stage in stages:
        forced = forced or stage.name == start_from
        out = root / stage.name
        table = _resolve(stage.table, root)
        key = _hash(stage, table, hashes)
        hashes[stage.name] = key
        done = _read_json(out / "stage.json")
        if not forced and done is not None and done.get("hash") == key:
            print(
                f"[{stage.name}] {stage.kind}: cached ({done['seconds']:.0f} s when it ran), skipped",
                flush=True,
            )
            rows.append({**done, "cached": True})
            continue
        (out / "stage.json").unlink(missing_ok=True)
        resume = not forced and (out / "stage.started").exists() and _read_text(out / "stage.started") == key
        if not resume and out.exists():
            shutil.rmtree(out)  # the output of another config (or of --from): made again from scratch
        out.mkdir(parents=True, exist_ok=True)
        (out / "stage.started").write_text(key)
        print(f"[{stage.name}] {stage.kind}: running in {out}", flush=True)
        t0 = time.perf_counter()
        summary = KINDS[stage.kind].run(configs[stage.name], out, resume)
        record = {
            "stage": stage.name,
            "kind": stage.kind,
            "hash": key,
            "seconds": time.perf_counter() - t0,
            "summary": _jsonable(summary),
        }
        (out / "stage.json").write_text(json.dumps(record, indent=1))
        rows.append({**record, "cached": False})
    (root / "pipeline.json").write_text(json.dumps(rows, indent=1))
    print(summary_table(rows), flush=True)
    return rows


def summary_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table: stage, kind, time, cached, and the stage's key figures."""
    lines = [f"{'stage':20s} {'kind':13s} {'time':>8s}  figures"]
    for r in rows:
        figures = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in (r.get("summary") or {}).items()
            if isinstance(v, int | float | str) and not isinstance(v, bool)
        )
        when = f"{r['seconds']:7.0f}s" + (" (cached)" if r.get("cached") else "")
        lines.append(f"{r['stage']:20s} {r['kind']:13s} {when}  {figures}")
    return "\n".join(lines)


def load_pipeline(path: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """A pipeline recipe with `--stages.NAME.key=value` / `--pipeline.dir=...` overrides merged in."""
    return merge_tables(read_toml(path), overrides, depth=4)


def is_pipeline(path: Path) -> bool:
    return "pipeline" in read_toml(path)


# ------------------------------------------------------------------------------------------------ helpers


def _refs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value.startswith("@") else []
    if isinstance(value, dict):
        return [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


def _resolve(value: Any, root: Path) -> Any:
    """References replaced by paths: @NAME -> root/NAME/model, @NAME:data -> root/NAME/data.jsonl."""
    if isinstance(value, str) and value.startswith("@"):
        name, _, what = value[1:].partition(":")
        if what not in ("", "model", "data"):
            raise ConfigError(f"reference {value!r}: use @NAME (its model) or @NAME:data (its dataset)")
        return str(root / name / ("data.jsonl" if what == "data" else "model"))
    if isinstance(value, dict):
        return {k: _resolve(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, root) for v in value]
    return value


def _hash(stage: Stage, table: dict[str, Any], upstream: dict[str, str]) -> str:
    """What a stage's result depends on: kind, table, the referenced stages' hashes, files it reads."""
    deps = {r[1:].split(":")[0]: upstream[r[1:].split(":")[0]] for r in _refs(stage.table)}
    files = {}
    for value in _strings(table):
        p = Path(value)
        if len(value) < 4096 and p.is_file():
            files[value] = _file_digest(p)
    blob = json.dumps(
        {"kind": stage.kind, "table": stage.table, "deps": deps, "files": files}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _file_digest(path: Path) -> str:
    """A file's content hash (a copy or a touch keeps the cache; an edit does not), memoised per process
    by (path, size, mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()[:16]
    return _DIGESTS[key]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
