"""`ponder bench rollout`: the rollout engine against transformers `generate()`, in one run.

Cases:
  nano  the nano-vllm protocol: 256 sequences, prompt and output lengths uniform in [100, 1024], random
        prompt tokens, EOS ignored, random weights at a real model's shape (--shapes). transformers
        `generate()` runs the same prompts with the output capped at --hf-new-tokens (all rows that long),
        which favours it (shorter contexts); its tok/s is printed beside ours with the ratio.
  grpo  a GRPO-shaped rollout: 64 prompts x 16 samples, 512-token outputs; reports the prefill tokens
        actually computed against 64 x prompt length (shared group prompts) and 1024 x (no sharing).
  cpu   SmolLM2-135M-Instruct (real weights) at batch 64 on the CPU: tok/s of both backends, alternating,
        and greedy identity on 8 prompts.

The bandwidth floor is the decode time if every step only had to read the weights once and each running
sequence's K/V once at the GPU's peak bandwidth (--bandwidth; by default the datasheet figure of the GPU
found: H200 4.8 TB/s, H100 SXM 3.35 TB/s), under the same continuous batching (at most --max-batch sequences
at once); "% of floor" is floor time / measured time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ponder.config import SamplingConfig


def shape_config(name: str):
    """transformers config of a real model's shape (random weights are initialised from it)."""
    from transformers import Qwen2Config, Qwen3Config

    common = dict(vocab_size=151936, max_position_embeddings=32768, tie_word_embeddings=True, rope_theta=1e6)
    if name == "qwen2.5-0.5b":
        return Qwen2Config(
            hidden_size=896,
            intermediate_size=4864,
            num_hidden_layers=24,
            num_attention_heads=14,
            num_key_value_heads=2,
            **common,
        )
    if name == "qwen2.5-1.5b":
        return Qwen2Config(
            hidden_size=1536,
            intermediate_size=8960,
            num_hidden_layers=28,
            num_attention_heads=12,
            num_key_value_heads=2,
            **common,
        )
    if name == "qwen3-0.6b":
        return Qwen3Config(
            hidden_size=1024,
            intermediate_size=3072,
            num_hidden_layers=28,
            num_attention_heads=16,
            num_key_value_heads=8,
            head_dim=128,
            **common,
        )
    raise ValueError(f"unknown shape {name!r}; expected one of {SHAPES}")


SHAPES = ("qwen2.5-0.5b", "qwen2.5-1.5b", "qwen3-0.6b")


def random_model(name: str, device: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM

    cfg = shape_config(name)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, torch_dtype=dtype)
    return model.eval()


def kv_bytes_per_token(cfg, dtype_bytes: int) -> int:
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * dtype_bytes


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes a decode step reads: every parameter once (tied embeddings counted once, as the lm_head)."""
    seen, total = set(), 0
    for p in model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    return total


def decode_floor_s(
    prompt_lens: list[int], out_lens: list[int], max_batch: int, w_bytes: int, kv_tok: int, bandwidth: float
) -> float:
    """Seconds to read weights + live K/V once per decode step, FCFS continuous batching of `max_batch`."""
    waiting = list(zip(prompt_lens, out_lens, strict=True))
    running: list[list[int]] = []  # [context length, tokens left]
    total = 0.0
    while waiting or running:
        while waiting and len(running) < max_batch:
            p, o = waiting.pop(0)
            running.append([p, o])
        total += w_bytes + kv_tok * sum(r[0] for r in running)
        for r in running:
            r[0] += 1
            r[1] -= 1
        running = [r for r in running if r[1] > 0]
    return total / bandwidth


@dataclass
class Row:
    case: str
    shape: str
    backend: str
    tokens: int
    seconds: float
    tok_s: float
    extra: dict = field(default_factory=dict)


# bytes/s by the vendors' datasheets, matched in this order against the device name
PEAK_BANDWIDTH = {"H200": 4.8e12, "H100 PCIe": 2.0e12, "H100 NVL": 3.9e12, "H100": 3.35e12, "A100": 2.0e12}


def peak_bandwidth(device_name: str) -> float:
    """The datasheet memory bandwidth of the GPU called `device_name` (e.g. "NVIDIA H100 80GB HBM3")."""
    for key, bw in PEAK_BANDWIDTH.items():
        if key in device_name:
            return bw
    raise SystemExit(f"no datasheet bandwidth known for {device_name!r}: pass --bandwidth (bytes/s)")


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device: str):
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


def _engine(model, tok, max_batch: int, kv_gib: float, block_size: int, **options):
    """The engine under test: a `kv_gib` KV cache, EOS ignored; `options`: more `Engine` arguments
    (`engine_options`)."""
    from ponder.rollout.engine import Engine

    cfg = model.config
    per_block = kv_bytes_per_token(cfg, next(model.parameters()).element_size()) * block_size
    num_blocks = int(kv_gib * 2**30 // per_block)
    eng = Engine(model, tok, num_blocks=num_blocks, block_size=block_size, max_batch=max_batch, **options)
    eng.stop_ids = set()  # EOS ignored: every sequence runs to its length
    return eng


def engine_options(args: argparse.Namespace) -> dict:
    """The engine's optional decode paths, as the command line chose them."""
    steps = args.decode_steps if args.graph_sampling else 1  # bursts need the sampling in the graphs
    return dict(
        decode_splits=args.decode_splits,
        graph_sampling=args.graph_sampling,
        decode_steps=steps,
        max_prefill_tokens=args.max_prefill_tokens,
    )


class _NoTokenizer:
    """What the engine needs of a tokenizer when nothing is decoded to text (random-weight runs)."""

    eos_token_id = 151643  # Qwen's <|endoftext|>; ignored (EOS is switched off in these runs)
    pad_token_id = 0

    def decode(self, ids, skip_special_tokens=True) -> str:
        return ""


def bench_nano(args, shape: str, rows: list[Row]) -> None:
    from ponder.rollout.hf import HFGenerator

    dev, dtype = args.device, torch.bfloat16
    rng = random.Random(0)
    n = args.num_seqs
    prompt_lens = [rng.randint(100, 1024) for _ in range(n)]
    out_lens = [rng.randint(100, 1024) for _ in range(n)]
    prompts = [[rng.randrange(10000) for _ in range(p)] for p in prompt_lens]
    model = random_model(shape, dev, dtype)
    tok = _NoTokenizer()
    eng = _engine(model, tok, args.max_batch, args.kv_gib, args.block_size, **engine_options(args))
    sampling = SamplingConfig(temperature=0.6, max_new_tokens=1024)
    # warm-up on other prompts (the prefix cache would otherwise serve the measured ones)
    warm_prompts = [[10000 + rng.randrange(10000) for _ in range(p)] for p in prompt_lens[:8]]
    _, warm = _timed(lambda: eng.generate(warm_prompts, SamplingConfig(max_new_tokens=16), seed=1), dev)
    outs, dt = _timed(lambda: eng.generate(prompts, sampling, seed=0, max_new_tokens=out_lens), dev)
    ntok = sum(len(o.token_ids) for o in outs)
    assert ntok == sum(out_lens), (ntok, sum(out_lens))
    w, kv = weight_bytes(model), kv_bytes_per_token(model.config, 2)
    floor = decode_floor_s(prompt_lens, out_lens, args.max_batch, w, kv, args.bandwidth)
    ours = Row(
        "nano",
        shape,
        "ponder",
        ntok,
        dt,
        ntok / dt,
        {
            "floor_tok_s": ntok / floor,
            "pct_floor": 100 * floor / dt,
            "warmup_s": warm,
            "prefill_tokens": eng.stats.prefill_tokens,
            "decode_steps": eng.stats.decode_steps,
            "preemptions": eng.stats.preemptions,
            "host_s": eng.stats.host_s,  # overlapped decode: the host's own work
            "wait_s": eng.stats.wait_s,  # and its waits for the device
            **{f"host_{k}_s": v for k, v in eng.stats.host_phases.items()},
        },
    )
    rows.append(ours)
    print(_fmt(ours), flush=True)
    eng = None  # its KV cache (--kv-gib) would leave transformers too little memory on an 80 GB GPU
    if dev == "cuda":
        torch.cuda.empty_cache()
    if args.hf_new_tokens > 0:
        hf = HFGenerator(model, tok, max_batch=n)
        hs = SamplingConfig(
            temperature=0.6, max_new_tokens=args.hf_new_tokens, min_new_tokens=args.hf_new_tokens
        )
        outs, dt = _timed(lambda: hf.generate(prompts, hs, seed=0), dev)
        ntok = sum(len(o.token_ids) for o in outs)
        row = Row("nano", shape, "transformers", ntok, dt, ntok / dt, {"new_tokens_each": args.hf_new_tokens})
        ours.extra["x_transformers"] = ours.tok_s / row.tok_s
        rows.append(row)
        print(_fmt(row), flush=True)
    model = None  # free the GPU memory before the next shape
    if dev == "cuda":
        torch.cuda.empty_cache()


def bench_grpo(args, shape: str, rows: list[Row]) -> None:
    dev, dtype = args.device, torch.bfloat16
    rng = random.Random(1)
    num_prompts, group, plen, olen = 64, 16, args.grpo_prompt_len, 512
    uniq = [[rng.randrange(10000) for _ in range(plen)] for _ in range(num_prompts)]
    prompts = [p for p in uniq for _ in range(group)]
    model = random_model(shape, dev, dtype)
    eng = _engine(model, _NoTokenizer(), args.max_batch, args.kv_gib, args.block_size, **engine_options(args))
    warm = [[10000 + rng.randrange(10000) for _ in range(plen)] for _ in range(2)]
    eng.generate(warm, SamplingConfig(max_new_tokens=16), seed=1)  # warm-up: kernels, graphs
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=olen)
    outs, dt = _timed(lambda: eng.generate(prompts, sampling, seed=0), dev)
    ntok = sum(len(o.token_ids) for o in outs)
    w, kv = weight_bytes(model), kv_bytes_per_token(model.config, 2)
    floor = decode_floor_s(
        [plen] * len(prompts), [olen] * len(prompts), args.max_batch, w, kv, args.bandwidth
    )
    row = Row(
        "grpo",
        shape,
        "ponder",
        ntok,
        dt,
        ntok / dt,
        {
            "prefill_tokens": eng.stats.prefill_tokens,
            "unique_prompt_tokens": num_prompts * plen,
            "all_prompt_tokens": len(prompts) * plen,
            "floor_tok_s": ntok / floor,
            "pct_floor": 100 * floor / dt,
            "preemptions": eng.stats.preemptions,
        },
    )
    rows.append(row)
    print(_fmt(row), flush=True)


def bench_cpu(args, rows: list[Row]) -> None:
    from ponder.model import load_model
    from ponder.rollout.engine import Engine
    from ponder.rollout.hf import HFGenerator

    torch.set_num_threads(args.threads)
    model, tok = load_model("smollm2-135m")
    rng = random.Random(0)
    prompts = [[rng.randrange(1000, 40000) for _ in range(rng.randint(30, 60))] for _ in range(16)]
    batch = [p for p in prompts for _ in range(4)]
    eng = Engine(model, tok, num_blocks=1024, block_size=16, max_batch=64)
    hf = HFGenerator(model, tok, max_batch=64)
    greedy = SamplingConfig(temperature=0.0, max_new_tokens=32)
    a = eng.generate(prompts[:8], greedy, 0)
    b = hf.generate(prompts[:8], greedy, 0)
    identical = all(x.token_ids == y.token_ids for x, y in zip(a, b, strict=True))
    print(f"greedy identical on 8 prompts: {identical}", flush=True)
    s = SamplingConfig(temperature=1.0, max_new_tokens=64)
    for rnd in range(args.rounds):
        for name, gen in (("ponder", eng), ("transformers", hf)):
            outs, dt = _timed(lambda gen=gen: gen.generate(batch, s, 1), "cpu")
            ntok = sum(len(o.token_ids) for o in outs)
            row = Row(
                "cpu",
                "smollm2-135m",
                name,
                ntok,
                dt,
                ntok / dt,
                {"round": rnd, "greedy_identical": identical},
            )
            rows.append(row)
            print(_fmt(row), flush=True)


def _fmt(r: Row) -> str:
    extra = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.extra.items())
    head = f"{r.case:5s} {r.shape:13s} {r.backend:13s} {r.tokens:8d} tok {r.seconds:8.2f} s"
    return f"{head} {r.tok_s:10.0f} tok/s  {extra}"


def _commit() -> str:
    if os.environ.get("PONDER_COMMIT"):  # a copied tree without its git history says which commit it is
        return os.environ["PONDER_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--case",
        action="append",
        choices=("nano", "grpo", "cpu"),
        help="repeatable; default nano+grpo on CUDA, cpu otherwise",
    )
    p.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, from {SHAPES}")
    p.add_argument("--num-seqs", type=int, default=256)
    p.add_argument("--max-batch", type=int, default=256)
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument(
        "--decode-splits", type=int, default=1, help="decode attention split over the context (power of two)"
    )
    p.add_argument(
        "--graph-sampling",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="lm_head and sampling inside the decode CUDA graphs (default: on)",
    )
    p.add_argument(
        "--decode-steps",
        type=int,
        default=8,
        help="decode steps per host round trip, replayed back to back (default 8; 1: one per launch, "
        "as with --no-graph-sampling)",
    )
    p.add_argument(
        "--max-prefill-tokens",
        type=int,
        default=8192,
        help="prompt tokens per prefill step (the engine's chunk)",
    )
    p.add_argument("--kv-gib", type=float, default=40.0, help="KV-cache size on the GPU")
    p.add_argument("--hf-new-tokens", type=int, default=128, help="transformers output length (0: skip)")
    p.add_argument("--grpo-prompt-len", type=int, default=256)
    p.add_argument(
        "--bandwidth", type=float, help="peak memory bandwidth, bytes/s (default: the GPU's datasheet figure)"
    )
    p.add_argument("--threads", type=int, default=2, help="CPU case: torch threads")
    p.add_argument("--rounds", type=int, default=2, help="CPU case: alternating rounds")
    p.add_argument("--out", help="write the rows as JSON here")


def run(args: argparse.Namespace) -> int:
    args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cases = args.case or (["nano", "grpo"] if args.device == "cuda" else ["cpu"])
    if args.device != "cuda" and set(cases) - {"cpu"}:
        raise SystemExit("ponder bench rollout: the nano and grpo cases need a CUDA GPU")
    if args.device == "cuda" and args.bandwidth is None:
        args.bandwidth = peak_bandwidth(torch.cuda.get_device_name())
    shapes = [s for s in args.shapes.split(",") if s]
    rows: list[Row] = []
    for case in cases:
        if case == "cpu":
            bench_cpu(args, rows)
        for shape in shapes if case != "cpu" else []:
            (bench_nano if case == "nano" else bench_grpo)(args, shape, rows)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "commit": _commit(),
        "machine": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "args": {k: v for k, v in vars(args).items() if k != "func"},
    }
    print(f"\n{meta['date']} commit {meta['commit']} on {meta['machine']}")
    for r in rows:
        print(_fmt(r))
    if args.out:
        Path(args.out).write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=1))
    return 0
