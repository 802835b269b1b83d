"""The host's share of a GPU decode step, measured on any CPU: the engine's GPU loop with the GPU taken out.

    python benchmarks/host_overhead_cpu.py [--seqs 256] [--max-out 1024] [--profile]

On a GPU the engine overlaps decode steps with the host's bookkeeping (scheduling, block tables, the graph
inputs, applying sampled tokens); once that bookkeeping takes longer than the GPU's step, the host sets the
pace (the 2-layer depth test of `profile_decode_gpu.py` shows it). This runs the same host code on the CPU:
`Engine` with overlapped decode forced on, `cuda_graphs.DecodeGraphs.run` with a replay that does nothing
(inputs still filled by `HostInputs`), the GPU sampler's key building (`sample_keys`) plus an argmax over a
tiny vocabulary, and a 1-layer, 64-wide tiny model so the remaining math is small. EOS is ignored; output
lengths are uniform in [100, --max-out] as in the nano protocol. With --decode-steps k > 1 the graphs
"sample" too (a no-op, the tokens stay 0) and each launch is a burst of up to k steps, so the host's
work per step is what bursts leave of it. Printed: seconds per decode step and
microseconds per generated token (best of --reps), which includes the tiny model's lm_head and argmax
(printed separately); with --profile, cProfile's top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import time

import torch

import ponder.rollout.engine.engine as engine_mod
from ponder.config import SamplingConfig
from ponder.model.tiny import TinyConfig, build_tiny
from ponder.rollout.engine.cuda_graphs import DecodeGraphs
from ponder.rollout.engine.triton_sampling import sample_keys


class _NoGraph:
    def replay(self) -> None: ...


class HostOnlyGraphs(DecodeGraphs):
    """`DecodeGraphs` on the CPU: the host inputs and their copy are real, the replay is a no-op."""

    def __init__(self, runner, cache, max_batch: int, width: int, max_steps: int = 1) -> None:
        self._setup(runner, cache, max_batch, width, 1, on_gpu=False, max_steps=max_steps)
        self.graphs = {b: _NoGraph() for b in self.sizes}
        if max_steps > 1:  # a burst's sampled graph
            self.sampled = {(b, noise): _NoGraph() for b in self.sizes for noise in (False, True)}
        self.outputs = {b: torch.zeros(b, runner.hf.config.hidden_size) for b in self.sizes}
        lm_head = runner.hf.lm_head
        runner.logits = lambda h, packed=False: lm_head(h)


MODEL_TIME = [0.0]


def _gpu_like_sample(logits, generators, sampling, steps):
    sample_keys([g.initial_seed() for g in generators], steps, logits.device)  # the host part of it
    t0 = time.perf_counter()
    tokens = logits.argmax(-1)
    logps = logits.gather(1, tokens[:, None])[:, 0]
    MODEL_TIME[0] += time.perf_counter() - t0
    return tokens, logps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seqs", type=int, default=256)
    p.add_argument("--max-out", type=int, default=1024)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--decode-steps", type=int, default=1, help="decode steps per launch (bursts)")
    args = p.parse_args()
    # 1 layer, 64 wide: the model's work stays small
    model, tok = build_tiny("tiny", TinyConfig(num_layers=1), torch.float32)
    model.eval()
    eng = engine_mod.Engine(
        model,
        tok,
        num_blocks=40000,
        block_size=16,
        max_batch=args.seqs,
        overlap=True,
        decode_steps=args.decode_steps,
    )
    eng.stop_ids = set()
    k = args.decode_steps
    eng._graphs = lambda cache: HostOnlyGraphs(eng.runner, cache, eng.max_batch, 128, k)
    engine_mod.sample_tensors = _gpu_like_sample
    rng = random.Random(0)
    prompts = [[rng.randrange(250) for _ in range(rng.randint(20, 60))] for _ in range(args.seqs)]
    outs = [rng.randint(100, args.max_out) for _ in range(args.seqs)]
    sampling = SamplingConfig(temperature=0.6, max_new_tokens=args.max_out)
    best, model_s = float("inf"), 0.0
    for rep in range(args.reps):
        MODEL_TIME[0] = 0.0
        t0 = time.perf_counter()
        eng.generate(prompts, sampling, seed=rep, max_new_tokens=outs)
        dt = time.perf_counter() - t0
        if dt < best:
            best, model_s = dt, MODEL_TIME[0]
    st = eng.stats
    print(
        f"{args.seqs} sequences, {st.decode_steps} decode steps, {st.decode_tokens} tokens: best of "
        f"{args.reps} {best:.3f} s = {1e3 * best / st.decode_steps:.3f} ms per step, "
        f"{1e6 * best / st.decode_tokens:.2f} us per token (of which argmax/gather "
        f"{1e6 * model_s / st.decode_tokens:.2f})"
    )
    parts = ", ".join(f"{k} {1e3 * v / st.decode_steps:.3f}" for k, v in st.host_phases.items())
    print(f"host work by phase (last run), ms per step: {parts}")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        eng.generate(prompts, sampling, seed=99, max_new_tokens=outs)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
