"""The decode graphs' host inputs (`cuda_graphs.HostInputs`): what a step writes, checked on the CPU (the
graphs themselves need CUDA)."""

import numpy as np
import pytest
import torch
from conftest import sharpen

from ponder.config import SamplingConfig
from ponder.model import load_model
from ponder.rollout.engine import Engine
from ponder.rollout.engine.cuda_graphs import DecodeGraphs, HostInputs
from ponder.rollout.engine.model import AttnMeta

BMAX, WIDTH, BS, SCRATCH = 8, 4, 16, 99


def _rows(h: HostInputs, turn: int) -> dict[str, np.ndarray]:
    a = h.buffers[turn].numpy()
    return {
        "tokens": a[:BMAX],
        "positions": a[BMAX : 2 * BMAX],
        "slots": a[2 * BMAX : 3 * BMAX],
        "ctx": a[3 * BMAX : 4 * BMAX],
        "keys": a[4 * BMAX : 7 * BMAX].reshape(3, BMAX),
        "tables": a[h.tables_at :].reshape(BMAX, WIDTH),
    }


def test_fill_writes_slots_and_context_from_the_tables_and_pads_the_rest():
    h = HostInputs(BMAX, WIDTH, BS, SCRATCH, pin=False)
    tables = [[5, 7], [3], [11, 12, 13]]
    positions = [20, 0, 47]  # block 1 of seq 0, block 0 of seq 1, block 2 of seq 2
    h.fill(1, [101, 102, 103], positions, tables)
    r = _rows(h, 1)
    assert r["tokens"][:3].tolist() == [101, 102, 103]
    assert r["positions"][:3].tolist() == positions
    assert r["slots"][:3].tolist() == [7 * BS + 4, 3 * BS + 0, 13 * BS + 15]
    assert r["ctx"][:3].tolist() == [21, 1, 48]
    assert r["tables"][0, :2].tolist() == [5, 7] and r["tables"][2, :3].tolist() == [11, 12, 13]
    # padding: token 0 at position 0 in the scratch block, context 1
    assert r["tokens"][3:].tolist() == [0] * 5 and r["positions"][3:].tolist() == [0] * 5
    assert r["slots"][3:].tolist() == [SCRATCH * BS] * 5 and r["ctx"][3:].tolist() == [1] * 5
    assert r["tables"][3:, 0].tolist() == [SCRATCH] * 5
    assert _rows(h, 0)["slots"].tolist() == [SCRATCH * BS] * BMAX  # the other buffer is untouched


def test_fill_writes_the_sampling_keys_as_bit_patterns_and_zeroes_the_padding():
    from ponder.rollout.engine.triton_sampling import key_rows

    h = HostInputs(BMAX, WIDTH, BS, SCRATCH, pin=False)
    keys = key_rows([2**63 - 1, 5, 2**40 + 7], [0, 3, 2**33 + 1])
    h.fill(0, [1, 2, 3], [0, 1, 2], [[1], [2], [3]], keys)
    got = _rows(h, 0)["keys"]
    assert got[:, :3].view(np.uint32).tolist() == keys.tolist()
    h.fill(0, [1], [0], [[1]], keys[:, :1])
    assert _rows(h, 0)["keys"][:, 1:].tolist() == [[0] * 7] * 3


def test_device_tokens_leave_the_token_row_alone():
    h = HostInputs(BMAX, WIDTH, BS, SCRATCH, pin=False)
    h.fill(0, [9, 9], [1, 2], [[1], [2]])
    h.fill(0, None, [2, 3], [[1], [2]])
    assert _rows(h, 0)["tokens"][:2].tolist() == [9, 9]
    assert _rows(h, 0)["positions"][:2].tolist() == [2, 3]


def test_a_grown_or_replaced_table_is_rewritten_and_a_shrunk_batch_repadded():
    h = HostInputs(BMAX, WIDTH, BS, SCRATCH, pin=False)
    a, b = [1], [2]
    h.fill(0, [0, 0], [15, 3], [a, b])
    a.append(8)  # the same list grew a block (as the scheduler does)
    c = [6, 4]  # another sequence takes row 1
    h.fill(0, [0, 0], [16, 17], [a, c])
    r = _rows(h, 0)
    assert r["tables"][0, :2].tolist() == [1, 8] and r["tables"][1, :2].tolist() == [6, 4]
    assert r["slots"][:2].tolist() == [8 * BS + 0, 4 * BS + 1]
    h.fill(0, [0], [17], [a])  # row 1's sequence finished
    r = _rows(h, 0)
    assert r["slots"][1] == SCRATCH * BS and r["tables"][1, 0] == SCRATCH
    h.fill(0, [0, 0], [17, 17], [a, c])  # it comes back: its table must be written again, not assumed
    assert _rows(h, 0)["tables"][1, :2].tolist() == [6, 4]


def test_a_table_wider_than_the_graphs_is_an_error():
    h = HostInputs(BMAX, WIDTH, BS, SCRATCH, pin=False)
    with pytest.raises(RuntimeError, match="holds 5 blocks"):
        h.fill(0, [0], [0], [[1, 2, 3, 4, 5]])


class _EagerGraphs(DecodeGraphs):
    """`DecodeGraphs` on the CPU: the same host inputs, buffer copy, `run` and `run_sampled`; each "replay"
    runs the forward on what the device buffer then holds (tokens, positions, slots, context lengths,
    keys, tables), as the captured graph reads them: the SDPA forward, or with `triton` the Triton forward
    and sampler the GPU captures (`_forward`, `_forward_sample`, through the interpreter)."""

    def __init__(
        self,
        runner,
        cache,
        max_batch: int,
        width: int,
        triton: bool = False,
        sample: bool = False,
        max_steps: int = 1,
    ) -> None:
        self._setup(runner, cache, max_batch, width, 1, on_gpu=False, max_steps=max_steps)
        self.outputs = {b: torch.zeros(b, runner.hf.config.hidden_size) for b in self.sizes}
        self.graphs = {b: _Replay(self, b, triton) for b in self.sizes}
        if sample:
            for b in self.sizes:
                for noise in (False, True):
                    self.samples[b, noise] = (torch.zeros(b, dtype=torch.long), torch.zeros(b))
                    self.sampled[b, noise] = _ReplaySample(self, b, noise)
        self.replayed: list[int] = []
        self.bursts: list[int] = []  # each `run_sampled` call's steps

    def run_sampled(self, tokens, positions, tables, keys, temperature, steps=1):
        self.bursts.append(steps)
        return super().run_sampled(tokens, positions, tables, keys, temperature, steps)


class _Replay:
    def __init__(self, graphs: _EagerGraphs, b: int, triton: bool) -> None:
        self.g, self.b, self.triton = graphs, b, triton

    def replay(self) -> None:
        g, b = self.g, self.b
        if self.triton:
            h = g._forward(b)
        else:
            meta = AttnMeta(list(range(b)), [1] * b, [], g.tables[:b].long(), g.ctx[:b].long())
            h = g.runner.hidden(
                g.cache, g.tokens[:b].long(), g.positions[:b].long(), g.slots[:b].long(), meta
            )
        g.outputs[b].copy_(h)
        g.replayed.append(b)


class _ReplaySample:
    def __init__(self, graphs: _EagerGraphs, b: int, noise: bool) -> None:
        self.g, self.b, self.noise = graphs, b, noise

    def replay(self) -> None:
        g, b = self.g, self.b
        for out, x in zip(g.samples[b, self.noise], g._forward_sample(b, self.noise), strict=True):
            out.copy_(x)
        g.replayed.append(-b)


def _graph_engine(model, tok, overlap: bool, kw: dict) -> tuple[Engine, list[_EagerGraphs]]:
    engine = Engine(model, tok, overlap=overlap, **kw)
    made: list[_EagerGraphs] = []
    plain_logits = engine.runner.logits
    engine.runner.logits = lambda h, packed=False: plain_logits(h)  # no packed weights on the CPU

    def graphs(cache):
        made.append(_EagerGraphs(engine.runner, cache, kw["max_batch"], 16))
        return made[-1]

    engine._graphs = graphs
    return engine, made


@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("num_blocks", [256, 24])  # 24: preemptions
def test_the_graph_path_generates_what_the_plain_path_does(overlap, num_blocks):
    """The decode steps fed through `DecodeGraphs.run` (host inputs, padding to a captured size, tokens
    still on the device when overlapped) give the plain engine's tokens and log-probs."""
    model, tok = load_model("tiny")
    sharpen(model)
    prompts = [tok.encode(t) for t in ["2+2=", "hello world, the engine", "abc"]]
    prompts = [p for p in prompts for _ in range(3)]
    limits = [3, 20, 7, 1, 20, 9, 20, 2, 15]
    kw = dict(num_blocks=num_blocks, block_size=4, max_batch=8)
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=20)
    ref = Engine(model, tok, overlap=False, **kw).generate(prompts, sampling, seed=3, max_new_tokens=limits)
    engine, made = _graph_engine(model, tok, overlap, kw)
    got = engine.generate(prompts, sampling, seed=3, max_new_tokens=limits)
    assert made and set(made[-1].replayed) - {8}  # steps ran through the graphs, padded to smaller sizes
    assert [o.token_ids for o in got] == [o.token_ids for o in ref]
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-5, rtol=0)
    assert engine.blocks.num_free == num_blocks
    # the overlapped loop accounts for the host's time: its own work, and waits for the device
    assert (engine.stats.host_s > 0) == overlap and engine.stats.wait_s >= 0
    if overlap:  # the phases account for the host's time (up to the first step's launch, outside the loop)
        phases = engine.stats.host_phases
        assert set(phases) == {"lookahead", "inputs", "sample", "handoff", "apply"}
        assert sum(phases.values()) >= engine.stats.host_s * 0.99


def _sampling_engine(
    model, tok, graph_sampling: bool, decode_steps: int = 1, num_blocks: int = 64
) -> tuple[Engine, list[_EagerGraphs]]:
    kw = dict(num_blocks=num_blocks, block_size=4, max_batch=8, attention="triton", overlap=True)
    engine = Engine(model, tok, graph_sampling=graph_sampling, decode_steps=decode_steps, **kw)
    made: list[_EagerGraphs] = []

    def graphs(cache):
        sample = engine.graph_sampling
        made.append(
            _EagerGraphs(engine.runner, cache, 8, 16, triton=True, sample=sample, max_steps=decode_steps)
        )
        return made[-1]

    engine._graphs = graphs
    return engine, made


def _sample_as_on_gpu(monkeypatch) -> None:
    """The eager sampler draws as on CUDA (`fused_sample` with `sample_keys`: noise keyed by seed and
    step), so every path, graph or eager, draws the same token for a sequence's step."""
    import ponder.rollout.engine.engine as engine_mod
    import ponder.rollout.engine.sampler as sampler_mod
    from ponder.rollout.engine import triton_sampling as tk

    def gpu_sampler(logits, generators, sampling, steps):  # what `sample_tensors` does on CUDA
        if sampling.temperature == 0:
            return tk.fused_sample(logits, None, 1.0)
        keys = tk.sample_keys([g.initial_seed() for g in generators], steps, "cpu")
        return tk.fused_sample(logits, keys, sampling.temperature)

    monkeypatch.setattr(engine_mod, "sample_tensors", gpu_sampler)
    monkeypatch.setattr(sampler_mod, "sample_tensors", gpu_sampler)


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_sampling_inside_the_graph_draws_what_the_eager_gpu_sampler_draws(temperature, monkeypatch):
    """`graph_sampling`: lm_head and the fused sampler run with the captured forward (keys and 1/T read
    from the graph's inputs). Same tokens and log-probs as the GPU's eager sampler (`fused_sample` with
    `sample_keys`) over the same forward; greedy as well."""
    _sample_as_on_gpu(monkeypatch)
    model, tok = load_model("tiny")
    sharpen(model)
    prompts = [tok.encode(t) for t in ["2+2=", "hello world", "abc"]] * 2
    sampling = SamplingConfig(temperature=temperature, max_new_tokens=6)
    ref_engine, ref_made = _sampling_engine(model, tok, graph_sampling=False)
    ref = ref_engine.generate(prompts, sampling, seed=4)
    engine, made = _sampling_engine(model, tok, graph_sampling=True)
    got = engine.generate(prompts, sampling, seed=4)
    assert any(b < 0 for b in made[-1].replayed) and not any(b < 0 for b in ref_made[-1].replayed)
    assert [o.token_ids for o in got] == [o.token_ids for o in ref]
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-5, rtol=0)
    top_p = engine.generate(prompts, SamplingConfig(temperature=0.8, top_p=0.9, max_new_tokens=3), seed=4)
    assert all(len(o.token_ids) == 3 for o in top_p)  # truncation: the eager sampler after the graph


@pytest.mark.parametrize("num_blocks", [64, 12])  # 12: preemptions
def test_bursts_of_decode_steps_give_the_single_step_tokens(num_blocks, monkeypatch):
    """`decode_steps`: the sampled graph replayed k times per launch, feeding its own samples, positions,
    slots and noise keys forward, gives what one launch per step gives: the same tokens and log-probs,
    with per-request limits, a stop token inside a burst and preemption; every block comes back."""
    _sample_as_on_gpu(monkeypatch)  # prefill and preempted steps sample eagerly
    model, tok = load_model("tiny")
    sharpen(model)
    prompts = [tok.encode(t) for t in ["2+2=", "hello world", "abc", "the engine runs"]] * 2
    limits = [11, 3, 9, 14, 1, 7, 14, 5]
    sampling = SamplingConfig(temperature=0.8, max_new_tokens=14)
    ref_engine, _ = _sampling_engine(model, tok, graph_sampling=True, num_blocks=num_blocks)
    free = ref_engine.generate(prompts, sampling, seed=5, max_new_tokens=limits)
    stop = free[0].token_ids[5]  # a stop id met mid-burst
    results, bursts = [], []
    for steps in (1, 4):
        engine, made = _sampling_engine(model, tok, True, decode_steps=steps, num_blocks=num_blocks)
        engine.stop_ids = {stop}
        results.append(engine.generate(prompts, sampling, seed=5, max_new_tokens=limits))
        assert engine.blocks.num_free == num_blocks
        assert (engine.stats.preemptions > 0) == (num_blocks == 12)
        bursts.append([n for g in made for n in g.bursts])
    ref, got = results
    assert [o.token_ids for o in got] == [o.token_ids for o in ref]
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-5, rtol=0)
    assert len(ref[0].token_ids) == 6 and ref[0].token_ids[-1] == stop  # the stop bit, inside a burst
    assert all(len(o.token_ids) <= n for o, n in zip(got, limits, strict=True))
    assert set(bursts[0]) == {1} and max(bursts[1]) == 4  # bursts ran, and were the only difference
    with pytest.raises(ValueError, match="decode_steps"):
        Engine(model, tok, decode_steps=0)
    with pytest.raises(ValueError, match="needs graph_sampling"):
        Engine(model, tok, graph_sampling=False)  # the default 8 steps
