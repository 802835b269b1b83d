"""GPU correctness and step-time checks of the rollout engine (run on a CUDA machine).

    python benchmarks/gpu_engine_check.py

1. float32, small Qwen2-shaped random model: engine greedy tokens vs transformers generate (token-identical
   expected), engine log-probs vs the trainer's forward (max abs gap), with Triton attention + CUDA graphs.
2. bfloat16, Qwen2.5-0.5B shape: the same log-prob gap (reported, not asserted), CUDA graphs on vs off.
3. Decode step time at batch 256, context ~800: graph replay alone vs a whole engine step (host overhead).
5. `python benchmarks/gpu_engine_check.py bursts`: decode bursts (`decode_steps` 8: the sampled graph
   replayed back to back) vs one launch per step, float32 small model, greedy (identity asserted) and
   sampled, mixed per-request limits, with and without preemption; then the nano protocol's decode at
   0.5B shape, bf16, for the time per step with either.
4. The trainer's setting: float32 weights that require grad, bf16 autocast, several generate calls on one
   engine with in-place weight updates between them: CUDA graphs vs eager, and vs a fresh engine (asserted).
   The engine's packed bf16 copies of the weights are rewritten in place by each call, so the graphs
   captured by the first call are replayed by the later ones.
"""

import time

import torch

from ponder.algos import token_logprobs
from ponder.bench.rollout import _NoTokenizer, random_model
from ponder.config import SamplingConfig
from ponder.rollout.engine import Engine
from ponder.rollout.hf import HFGenerator


def trainer_logprobs(model, prompt, completion, temperature):
    ids = torch.tensor([prompt + completion], device="cuda")
    with torch.no_grad():
        logits = model(ids).logits[:, len(prompt) - 1 : -1].float()
    return token_logprobs(logits, ids[:, len(prompt) :], temperature)[0]


def check(dtype, shape_kw, label):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=151936, tie_word_embeddings=True, rope_theta=1e6, **shape_kw)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(cfg).to(dtype).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" not in n:
                p.normal_(0, 0.05)
    tok = _NoTokenizer()
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 10000, (int(n),), generator=g).tolist() for n in (5, 40, 77, 130, 300, 64)]
    greedy = SamplingConfig(temperature=0, max_new_tokens=48)
    for graphs in (True, False):
        eng = Engine(model, tok, num_blocks=512, block_size=16, max_batch=8, cuda_graphs=graphs)
        eng.stop_ids = set()
        out = eng.generate(prompts, greedy, seed=0)
        hf = HFGenerator(model, tok, max_batch=1)
        hf.stop_ids = []
        ref = [hf.generate([p], greedy, seed=0)[0] for p in prompts]
        same = sum(o.token_ids == r.token_ids for o, r in zip(out, ref, strict=True))
        first_diff = [
            next((i for i, (a, b) in enumerate(zip(o.token_ids, r.token_ids, strict=False)) if a != b), None)
            for o, r in zip(out, ref, strict=True)
        ]
        # rows that finish at different steps, and a cache small enough to preempt: still identical
        limits = [5, 48, 17, 30, 2, 48]
        small = Engine(model, tok, num_blocks=40, block_size=16, max_batch=8, cuda_graphs=graphs)
        small.stop_ids = set()
        for _ in range(2):  # twice: the second call reuses the prefix cache and the captured graphs
            cut = small.generate(prompts, greedy, seed=0, max_new_tokens=limits)
            same_cut = sum(o.token_ids == r.token_ids[:n] for o, r, n in zip(cut, ref, limits, strict=True))
        print(
            f"[{label} graphs={graphs}] mixed lengths, {small.stats.preemptions} preemptions: "
            f"{same_cut}/{len(prompts)} identical",
            flush=True,
        )
        sampled = eng.generate(prompts, SamplingConfig(temperature=1.0, max_new_tokens=48), seed=1)
        gaps = [
            (torch.tensor(o.logprobs, device="cuda") - trainer_logprobs(model, p, o.token_ids, 1.0))
            .abs()
            .max()
            .item()
            for p, o in zip(prompts, sampled, strict=True)
        ]
        print(
            f"[{label} graphs={graphs}] greedy identical to transformers: {same}/{len(prompts)} "
            f"(first differing position per prompt: {first_diff}); "
            f"log-prob max |engine - trainer| = {max(gaps):.2e}",
            flush=True,
        )
        if dtype == torch.float32:  # exact in float32: a mismatch fails the check
            assert same == same_cut == len(prompts), f"{label} graphs={graphs}: outputs differ"
            assert max(gaps) < 1e-4, f"{label} graphs={graphs}: log-prob gap {max(gaps):.2e}"
    return model


def autocast_calls():
    """Several calls under bf16 autocast over fp32 trainable weights, updated in place between calls."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=4,
        num_attention_heads=9,
        num_key_value_heads=3,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg)
    tok = _NoTokenizer()
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 10000, (int(n),), generator=g).tolist() for n in (40, 40, 70, 33)]
    greedy = SamplingConfig(temperature=0, max_new_tokens=40)

    def engine(graphs: bool) -> Engine:
        eng = Engine(
            model,
            tok,
            num_blocks=256,
            block_size=16,
            max_batch=16,
            cuda_graphs=graphs,
            autocast=torch.bfloat16,
        )
        eng.stop_ids = set()
        return eng

    engines = {graphs: engine(graphs) for graphs in (True, False)}
    for call in range(3):
        line = []
        for graphs, eng in engines.items():
            out = [o.token_ids for o in eng.generate(prompts, greedy, seed=0)]
            fresh = engine(graphs)
            ref = [o.token_ids for o in fresh.generate(prompts, greedy, seed=0)]
            same = sum(a == b for a, b in zip(out, ref, strict=True))
            line.append(f"graphs={graphs}: {same}/{len(prompts)} identical to a fresh engine")
            assert same == len(prompts), f"call {call} (graphs={graphs}) differs from a fresh engine"
        print(f"[autocast call {call}] " + "; ".join(line), flush=True)
        with torch.no_grad():  # an optimizer-like in-place update
            for p in model.parameters():
                p.add_(torch.randn_like(p), alpha=1e-3)


def step_times():
    model = random_model("qwen2.5-0.5b", "cuda", torch.bfloat16)
    eng = Engine(model, _NoTokenizer(), num_blocks=20000, block_size=16, max_batch=256)
    eng.stop_ids = set()
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 10000, (700,), generator=g).tolist() for _ in range(256)]
    eng.generate(prompts[:4], SamplingConfig(max_new_tokens=4), seed=0)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    eng.generate(prompts, SamplingConfig(temperature=1.0, max_new_tokens=200), seed=0)
    torch.cuda.synchronize()
    total = time.perf_counter() - t0
    st = eng.stats
    graphs = eng.graphs
    graph = graphs.graphs[256]
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(50):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    replay_ms = start.elapsed_time(end) / 50
    logits = eng.runner.logits(graphs.outputs[256])
    start.record()
    for _ in range(50):
        eng.runner.logits(graphs.outputs[256])
    end.record()
    torch.cuda.synchronize()
    head_ms = start.elapsed_time(end) / 50
    from ponder.rollout.engine.sampler import sample

    gens = [torch.Generator().manual_seed(i) for i in range(256)]
    s = SamplingConfig(temperature=1.0, max_new_tokens=10)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(20):
        sample(logits, gens, s, list(range(256)))
    torch.cuda.synchronize()
    sample_ms = (time.perf_counter() - t0) / 20 * 1e3
    print(
        f"[0.5B bf16 b256 ctx 700-900] 256x200 in {total:.2f}s, prefill {st.prefill_tokens} tok, "
        f"{st.decode_steps} decode steps; graph replay {replay_ms:.3f} ms, lm_head {head_ms:.3f} ms, "
        f"sample {sample_ms:.3f} ms per step",
        flush=True,
    )


def bursts():
    model = random_model("qwen2.5-0.5b", "cuda", torch.float32)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 10000, (int(n),), generator=g).tolist() for n in range(20, 500, 20)]
    limits = [int(x) for x in torch.randint(1, 200, (len(prompts),), generator=g)]
    for temperature in (0.0, 0.8):
        sampling = SamplingConfig(temperature=temperature, max_new_tokens=200)
        for blocks in (4000, 300):
            outs = {}
            for steps in (1, 8):
                eng = Engine(
                    model, _NoTokenizer(), num_blocks=blocks, block_size=16, max_batch=32,
                    graph_sampling=True, decode_steps=steps,
                )  # fmt: skip
                eng.stop_ids = set()
                outs[steps] = eng.generate(prompts, sampling, seed=3, max_new_tokens=limits)
                assert eng.blocks.num_free == blocks
            same = sum(a.token_ids == b.token_ids for a, b in zip(outs[1], outs[8], strict=True))
            gap = max(
                max((abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=False)), default=0.0)
                for a, b in zip(outs[1], outs[8], strict=True)
            )
            print(
                f"[bursts fp32 0.5B T={temperature} blocks={blocks} preemptions={eng.stats.preemptions}] "
                f"decode_steps 8 vs 1: {same}/{len(prompts)} identical, max log-prob gap {gap:.1e}",
                flush=True,
            )
            if temperature == 0:
                assert same == len(prompts), "greedy bursts differ from single steps"


if __name__ == "__main__":
    import sys

    print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    if sys.argv[1:] == ["autocast"]:
        autocast_calls()
        sys.exit(0)
    if sys.argv[1:] == ["bursts"]:
        bursts()
        sys.exit(0)
    small = dict(
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    check(torch.float32, small, "fp32 small")
    half = dict(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
    )
    check(torch.bfloat16, half, "bf16 0.5B-shape")
    step_times()
