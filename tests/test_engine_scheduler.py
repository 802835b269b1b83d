"""Prefix caching and chunked prefill in the paged-KV engine: exact token accounting, cache validity across
weight updates, greedy identity under chunking and preemption, LRU eviction, no leaked block.

python -m pytest -q tests/test_engine_scheduler.py
"""

from __future__ import annotations

import pytest
import torch
from conftest import sharpen

from ponder.config import SamplingConfig
from ponder.model import load_model
from ponder.rollout.engine import Engine
from ponder.rollout.engine.block_manager import BlockManager, chain_hashes
from ponder.rollout.engine.scheduler import Scheduler
from ponder.rollout.engine.sequence import Sequence

GREEDY = SamplingConfig(temperature=0, max_new_tokens=16)
SAMPLE = SamplingConfig(temperature=1.0, max_new_tokens=16)
BS = 4
SYSTEM = "<|system|>Be careful: think, then answer.\n<|user|>"  # the shared chat-template prefix
QUESTIONS = ["What is 2+2?", "Name a prime over ten", "Q", "Spell cat backwards"]  # distinct first tokens


@pytest.fixture(scope="module")
def tiny():
    model, tok = load_model("tiny")
    return sharpen(model), tok


def _shared_prefix_prompts(tok) -> tuple[list[int], list[list[int]]]:
    """Prompts starting with one block-aligned prefix (token lists are concatenated, not re-encoded)."""
    system = tok.encode(SYSTEM)
    prefix = system[: len(system) // BS * BS]
    return prefix, [prefix + tok.encode(q) for q in QUESTIONS]


def _tokens(outs) -> list[list[int]]:
    return [o.token_ids for o in outs]


def _assert_idle(blocks: BlockManager) -> None:
    """The no-leak invariant: every block unreferenced, and either free or cached-evictable (not both)."""
    assert all(r == 0 for r in blocks.ref_counts)
    free, cached = set(blocks.free), set(blocks.evictable)
    assert len(free) == len(blocks.free) and not free & cached
    assert free | cached == set(range(blocks.num_blocks))
    assert all(blocks.block_hash[b] is None for b in free)
    assert all(blocks.by_hash[blocks.block_hash[b]] == b for b in cached)
    assert blocks.num_free == blocks.num_blocks


def test_shared_prefix_is_computed_once(tiny):
    model, tok = tiny
    prefix, prompts = _shared_prefix_prompts(tok)
    assert len(prefix) >= 10 * BS  # dozens of tokens, as a chat template + system prompt
    batch = [p for p in prompts for _ in range(3)]  # 4 groups of 3 samples
    cached = Engine(model, tok, num_blocks=256, block_size=BS)
    plain = Engine(model, tok, num_blocks=256, block_size=BS, prefix_cache=False)
    got, ref = cached.generate(batch, GREEDY, seed=0), plain.generate(batch, GREEDY, seed=0)
    assert _tokens(got) == _tokens(ref)
    assert len({tuple(t) for t in _tokens(ref)}) == len(prompts)  # not vacuous
    assert plain.stats.prefill_tokens == sum(len(p) for p in prompts) and plain.stats.cached_tokens == 0
    # The first prompt computes the prefix; the three others reuse all its blocks and compute their own rest.
    assert cached.stats.cached_tokens == 3 * len(prefix)
    assert cached.stats.prefill_tokens == sum(len(p) for p in prompts) - 3 * len(prefix)
    _assert_idle(cached.blocks)
    _assert_idle(plain.blocks)


def test_group_split_by_max_batch_reuses_its_prompt(tiny):
    model, tok = tiny
    prompt = _shared_prefix_prompts(tok)[1][1]
    engine = Engine(model, tok, num_blocks=256, block_size=BS, max_batch=2)  # 5 samples: groups of 2, 2, 1
    plain = Engine(model, tok, num_blocks=256, block_size=BS, max_batch=2, prefix_cache=False)
    assert _tokens(engine.generate([prompt] * 5, SAMPLE, 0)) == _tokens(
        plain.generate([prompt] * 5, SAMPLE, 0)
    )
    reused = (len(prompt) - 1) // BS * BS
    assert (engine.stats.prefill_tokens, engine.stats.cached_tokens) == (
        len(prompt) + 2 * (len(prompt) - reused),
        2 * reused,
    )
    _assert_idle(engine.blocks)


def test_cache_kept_while_weights_unchanged_and_dropped_after_update(tiny):
    model, tok = tiny
    prefix, prompts = _shared_prefix_prompts(tok)
    prompts = prompts[:2]
    engine = Engine(model, tok, num_blocks=256, block_size=BS)
    first = engine.generate(prompts, GREEDY, seed=0)
    cold = (engine.stats.prefill_tokens, engine.stats.cached_tokens)  # the 2nd prompt reuses the prefix
    assert cold == (sum(len(p) for p in prompts) - len(prefix), len(prefix))
    again = engine.generate(prompts, GREEDY, seed=0)
    assert _tokens(again) == _tokens(first)
    reusable = sum((len(p) - 1) // BS * BS for p in prompts)  # every full block but the last token's
    assert engine.stats.cached_tokens == reusable
    assert engine.stats.prefill_tokens == sum(len(p) for p in prompts) - reusable
    gen = torch.Generator().manual_seed(1)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        with torch.no_grad():  # in place, as an optimizer step does
            for p in model.model.layers[0].parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.5)
        after = engine.generate(prompts, GREEDY, seed=0)
        assert (engine.stats.prefill_tokens, engine.stats.cached_tokens) == cold  # nothing from before
        assert _tokens(after) != _tokens(first)
        fresh = Engine(model, tok, num_blocks=256, block_size=BS).generate(prompts, GREEDY, seed=0)
        assert _tokens(after) == _tokens(fresh)
        _assert_idle(engine.blocks)
        # Re-pointing a parameter at new storage also invalidates.
        engine.generate(prompts, GREEDY, seed=0)
        assert engine.stats.cached_tokens == reusable
        model.model.layers[1].self_attn.k_proj.weight.data = model.model.layers[1].self_attn.k_proj.weight * 2
        engine.generate(prompts, GREEDY, seed=0)
        assert (engine.stats.prefill_tokens, engine.stats.cached_tokens) == cold
    finally:
        model.load_state_dict(state)  # the fixture is shared by the module


CONFIGS = {  # name: Engine kwargs; the reference is prefix_cache=False, unchunked, a big cache
    "prefix_cache": dict(num_blocks=256),
    "chunked_5": dict(num_blocks=256, max_prefill_tokens=5, prefix_cache=False),
    "prefix_cache_chunked_5": dict(num_blocks=256, max_prefill_tokens=5),
    "preempted": dict(num_blocks=24, max_batch=6, prefix_cache=False),
    "prefix_cache_preempted": dict(num_blocks=24, max_batch=6),
    "prefix_cache_preempted_chunked_5": dict(num_blocks=24, max_batch=6, max_prefill_tokens=5),
}


@pytest.fixture(scope="module")
def reference(tiny):
    model, tok = tiny
    prompts = [p for p in _shared_prefix_prompts(tok)[1] for _ in range(2)]
    engine = Engine(model, tok, num_blocks=512, block_size=BS, prefix_cache=False)
    runs = {"greedy": GREEDY, "sample": SAMPLE}
    return prompts, {k: _tokens(engine.generate(prompts, s, seed=1)) for k, s in runs.items()}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_outputs_identical_with_cache_chunks_and_preemption(tiny, reference, name):
    model, tok = tiny
    prompts, expected = reference
    engine = Engine(model, tok, block_size=BS, **CONFIGS[name])
    for key, sampling in (("greedy", GREEDY), ("sample", SAMPLE)):
        assert _tokens(engine.generate(prompts, sampling, seed=1)) == expected[key], key
        _assert_idle(engine.blocks)
        if "preempted" in name:
            assert engine.stats.preemptions > 0
        if name.startswith("prefix_cache"):  # readmissions and the shared prefix hit the cache
            assert engine.stats.cached_tokens > 0
    assert len({tuple(t) for t in expected["greedy"]}) == len(prompts) // 2


def test_readmitted_sequence_reuses_its_own_blocks(tiny):
    """Preempted sequences free their blocks; on readmission their prompt and the full blocks of their own
    completion come back from the cache. Distinct prompts schedule identically with and without the cache,
    so the recompute saved is exactly `cached_tokens`."""
    model, tok = tiny
    prompts = [tok.encode(t) for t in ["Abc def ghi", "Bcd efg hij klm", "Cde", "Def ghi jkl mno pqr"]]
    kw = dict(num_blocks=10, block_size=BS, max_batch=4)
    cached, plain = Engine(model, tok, **kw), Engine(model, tok, **kw, prefix_cache=False)
    assert _tokens(cached.generate(prompts, GREEDY, 0)) == _tokens(plain.generate(prompts, GREEDY, 0))
    assert cached.stats.preemptions == plain.stats.preemptions > 0
    assert cached.stats.cached_tokens > 0
    assert cached.stats.prefill_tokens + cached.stats.cached_tokens == plain.stats.prefill_tokens
    _assert_idle(cached.blocks)


def test_one_token_chunks_match_unchunked(tiny):
    model, tok = tiny
    prompts = [tok.encode(q) for q in QUESTIONS for _ in range(2)]
    sampling = SamplingConfig(temperature=0, max_new_tokens=8)
    ref = Engine(model, tok, num_blocks=128, block_size=BS, prefix_cache=False).generate(prompts, sampling, 0)
    engine = Engine(model, tok, num_blocks=128, block_size=BS, max_prefill_tokens=1)
    assert _tokens(engine.generate(prompts, sampling, seed=0)) == _tokens(ref)
    assert engine.stats.prefill_tokens == sum(len(p) for p in prompts[::2])
    _assert_idle(engine.blocks)


def test_chunks_fit_the_budget_and_decodes_continue():
    """Scheduler alone: a long prompt is prefilled 5 tokens a step while an admitted short one decodes."""
    blocks = BlockManager(num_blocks=64, block_size=BS)
    sched = Scheduler(blocks, max_batch=8, max_new_tokens=4, stop_ids=set(), max_prefill_tokens=5)
    short = Sequence(0, [1, 2, 3], torch.Generator())
    long = Sequence(1, list(range(10, 32)), torch.Generator())  # 22 tokens: 2 + 5 + 5 + 5 + 5 after `short`
    sched.add([short])
    sched.add([long])
    sizes, decoded = [], []
    while not sched.done():
        step = sched.schedule()
        assert sum(p.end - p.head.num_cached for p in step.prefill) <= 5
        for p in step.prefill:
            if p.head is long:
                sizes.append(p.end - p.head.num_cached)
            if p.last:
                sched.on_prefilled(p.group, [7] * len(p.group), [0.0] * len(p.group))
            else:
                sched.on_chunk(p)
        decoded.append(short in step.decode)
        sched.on_decoded(step.decode, [7] * len(step.decode), [0.0] * len(step.decode))
    assert sizes == [2, 5, 5, 5, 5]
    assert decoded[:4] == [False, True, True, True]  # `short` decodes while `long` is still prefilling
    assert long.completion == [7] * 4 and short.completion == [7] * 4
    _assert_idle(blocks)


def test_lru_eviction_and_hash_chain():
    blocks = BlockManager(num_blocks=4, block_size=2)
    tokens = [5, 6, 7, 8, 9, 10]
    hashes = chain_hashes(tokens, 2, [], 3)
    assert len(set(hashes)) == 3
    assert chain_hashes([1, 6, 7, 8], 2, [], 2)[1] != hashes[1]  # a block's hash names its whole prefix
    table = blocks.allocate(3)
    for b, h in zip(table, hashes, strict=True):
        blocks.register(b, h)
    blocks.release(table)
    assert list(blocks.evictable) == table[::-1] and blocks.num_free == 4  # the tail is evicted first
    assert blocks.lookup(hashes) == table
    (fresh,) = blocks.allocate(1)  # the never-used block goes first
    assert fresh not in table and blocks.evictions == 0
    two = blocks.allocate(2)  # then the LRU cached ones: the chain's tail
    assert two == table[:0:-1] and blocks.evictions == 2
    assert blocks.lookup(hashes) == table[:1]
    assert blocks.acquire_cost(table[:1]) == 1
    blocks.acquire(table[:1])
    assert blocks.num_free == 0
    with pytest.raises(RuntimeError, match="free"):
        blocks.allocate(1)
    blocks.release([fresh, *two, table[0]])
    _assert_idle(blocks)
    blocks.invalidate()
    assert blocks.lookup(hashes) == [] and len(blocks.free) == 4
    _assert_idle(blocks)


def test_full_cache_of_cached_blocks_is_evicted(tiny):
    model, tok = tiny
    prompts = [tok.encode(f"prompt number {i} asks something else") for i in range(8)]
    engine = Engine(model, tok, num_blocks=24, block_size=BS, max_batch=2)
    ref = Engine(model, tok, num_blocks=512, block_size=BS, prefix_cache=False)
    assert _tokens(engine.generate(prompts, GREEDY, seed=0)) == _tokens(ref.generate(prompts, GREEDY, seed=0))
    assert engine.blocks.evictions > 0 and len(engine.blocks.evictable) > 0
    _assert_idle(engine.blocks)
    again = engine.generate(prompts[::-1], GREEDY, seed=0)
    assert _tokens(again) == _tokens(ref.generate(prompts[::-1], GREEDY, seed=0))
    _assert_idle(engine.blocks)


def test_error_mid_generate_leaks_nothing_and_cache_stays_valid(tiny, monkeypatch):
    model, tok = tiny
    prompts = _shared_prefix_prompts(tok)[1]
    engine = Engine(model, tok, num_blocks=256, block_size=BS, max_prefill_tokens=16)
    forward, calls = engine._forward, []

    def failing(*args):
        calls.append(1)
        if len(calls) == 6:
            raise RuntimeError("interrupted")
        return forward(*args)

    monkeypatch.setattr(engine, "_forward", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        engine.generate(prompts, GREEDY, seed=0)
    _assert_idle(engine.blocks)
    assert len(engine.blocks.evictable) > 0  # the chunks computed before the error stay cached
    monkeypatch.setattr(engine, "_forward", forward)
    fresh = Engine(model, tok, num_blocks=256, block_size=BS, prefix_cache=False).generate(prompts, GREEDY, 0)
    assert _tokens(engine.generate(prompts, GREEDY, seed=0)) == _tokens(fresh)
    assert engine.stats.cached_tokens > 0
    _assert_idle(engine.blocks)


@pytest.mark.parametrize("budget", [0, -3])
def test_bad_prefill_budget_raises(tiny, budget):
    model, tok = tiny
    with pytest.raises(ValueError, match="max_prefill_tokens"):
        Engine(model, tok, max_prefill_tokens=budget)
    with pytest.raises(ValueError, match="max_prefill_tokens"):
        Scheduler(BlockManager(8, 4), 4, 4, set(), max_prefill_tokens=budget)


@pytest.mark.parametrize(
    "kw",
    [
        dict(num_blocks=256, block_size=4, max_batch=8),  # all at once
        dict(num_blocks=256, block_size=4, max_batch=3),  # groups wait for room
        dict(num_blocks=24, block_size=4, max_batch=8),  # preemptions
    ],
)
def test_overlapped_decode_gives_the_same_outputs(kw):
    """Overlapped decode (the CUDA default) speculates one step past unknown stops; on the CPU it must give
    exactly the outputs, log-probs and block accounting of the plain loop."""
    model, tok = load_model("tiny")
    sharpen(model)
    prompts = [tok.encode(t) for t in ["2+2=", "hello world, the engine", "abc"]]
    prompts = [p for p in prompts for _ in range(3)]
    finished = []
    for sampling in (
        SamplingConfig(temperature=1.0, max_new_tokens=20),
        # a dozen one-character stop strings: several of the random byte streams stop, for any seed
        SamplingConfig(temperature=0.8, max_new_tokens=20, min_new_tokens=5, stop=list("etaoinshrdlu")),
    ):
        limits = [3, 20, 7, 1, 20, 9, 20, 2, 15]
        ref_engine = Engine(model, tok, overlap=False, **kw)
        ref = ref_engine.generate(prompts, sampling, seed=5, max_new_tokens=limits)
        engine = Engine(model, tok, overlap=True, **kw)
        got = engine.generate(prompts, sampling, seed=5, max_new_tokens=limits)
        assert [o.token_ids for o in got] == [o.token_ids for o in ref]
        assert [o.finished for o in got] == [o.finished for o in ref]
        for a, b in zip(got, ref, strict=True):  # batches differ in size: equal up to float rounding
            torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-5, rtol=0)
        finished += [o.finished for o in ref]
        assert all(len(o.token_ids) <= n for o, n in zip(got, limits, strict=True))
        _assert_idle(engine.blocks)
    assert any(finished) and not all(finished)  # stops were exercised


def test_lookahead_sizes_a_burst_and_reserves_its_slots():
    """`lookahead(seqs, ahead, steps)`: the in-flight burst's sequences that go on, each given cache slots
    for the next burst's positions; the burst no longer than the longest remaining sequence needs, nor
    than `max_seq_tokens` allows; None (nothing allocated) when the free blocks do not cover it."""
    blocks = BlockManager(num_blocks=8, block_size=BS)
    sched = Scheduler(blocks, max_batch=4, max_new_tokens=10, stop_ids=set())
    a = Sequence(0, [1, 2, 3], torch.Generator())
    b = Sequence(1, [4, 5, 6], torch.Generator(), max_new_tokens=3)
    sched.add([a])
    sched.add([b])
    step = sched.schedule()
    for p in step.prefill:
        sched.on_prefilled(p.group, [7], [0.0])
    # both hold 4 tokens (prompt + 1) in one block; an in-flight burst of 2 feeds positions 3 and 4
    assert [len(s.block_table) for s in (a, b)] == [1, 1]
    nxt, steps = sched.lookahead([a, b], ahead=2, steps=8)
    # b: 1 + 2 in flight = its limit of 3, it stops; a: 10 - 3 = 7 tokens to come, so a burst of 7
    assert nxt == [a] and steps == 7
    # a feeds positions 5..11 next: blocks up to position 11, 3 in all
    assert len(a.block_table) == 3 and len(b.block_table) == 1
    sched.max_seq_tokens = 9  # positions 0..8: a burst of 4 (positions 5..8)
    assert sched.lookahead([a], ahead=2, steps=8) == ([a], 4)
    free = blocks.num_free
    assert not sched.reserve([a], 2, 100) and blocks.num_free == free  # 27 blocks: nothing taken
    assert sched.reserve([a], 2, 16) and len(a.block_table) == 6 and blocks.num_free == free - 3
