"""GRPO end to end on a tiny random model: learning moves the reward, checkpoints load, resume is exact."""

import json
import math
import sys
import types
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ponder.config import load_config
from ponder.rewards import REWARDS, Unscorable, register_reward
from ponder.rollout import HFGenerator
from ponder.rollout.engine import Engine
from ponder.stages.grpo import GRPOTrainer
from ponder.train import checkpoint
from ponder.train.metrics import read_jsonl

SMOKE = Path(__file__).parent.parent / "recipes" / "smoke.toml"

if "digit_fraction" not in REWARDS:

    @register_reward("digit_fraction")
    def digit_fraction(completion: str, ref) -> float:
        """A trivially learnable reward for a tiny model: the share of characters that are digits."""
        return sum(ch.isdigit() for ch in completion) / max(1, len(completion))


if "flaky_verifier" not in REWARDS:

    @register_reward("flaky_verifier")
    def flaky_verifier(completion: str, ref) -> float:
        """Unscorable for about a third of responses (by length), like a verifier that times out."""
        if len(completion) % 3 == 0:
            raise Unscorable("verifier timed out")
        return float(len(completion) % 2)

    @register_reward("broken_verifier")
    def broken_verifier(completion: str, ref) -> float:
        raise Unscorable("verifier crashed")


def _cfg(tmp_path: Path, *extra: str):
    return load_config(SMOKE, [f"--run.dir={tmp_path}", "--run.progress=false", *extra])


def test_grpo_raises_a_trivially_learnable_reward(tmp_path):
    torch.manual_seed(0)
    cfg = _cfg(
        tmp_path,
        "--reward.weights={digit_fraction = 1.0}",
        "--prompt.prefill=",
        "--grpo.steps=16",
        "--grpo.group_size=8",
        "--sampling.max_new_tokens=8",
        "--optim.lr=1e-2",
        "--run.save_every=0",
    )
    GRPOTrainer(cfg, tmp_path).train()
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    first = sum(r["reward"] for r in rows[:4]) / 4
    last = sum(r["reward"] for r in rows[-4:]) / 4
    assert last > first + 0.25, (first, last)
    assert all(r["grad_norm"] > 0 for r in rows)


def test_run_directory_contents(tmp_path):
    GRPOTrainer(_cfg(tmp_path), tmp_path).train()
    assert (tmp_path / "config.toml").exists()
    assert load_config(tmp_path / "config.toml").grpo.steps == 4
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    needed = {
        "reward",
        "accuracy",
        "format",
        "response_len_mean",
        "response_len_max",
        "clip_frac",
        "kl",
        "entropy",
        "grad_norm",
        "lr",
        "time_gen",
        "time_reward",
        "time_train",
        "reward/tags",
        "reflection_frac",
        "distinct_frac",
    }
    assert needed <= set(rows[0])
    assert all(0.0 <= r["reflection_frac"] <= 1.0 for r in rows)
    assert all(0.0 < r["distinct_frac"] <= 1.0 for r in rows)
    samples = read_jsonl(tmp_path / "samples.jsonl")
    assert samples and {"prompt", "response", "scores", "answer"} <= set(samples[0])
    assert [p.name for p in checkpoint.checkpoints(tmp_path)] == ["step-2", "step-4"]


def test_checkpoint_loads_with_plain_transformers_and_generates(tmp_path):
    trainer = GRPOTrainer(_cfg(tmp_path, "--grpo.steps=2"), tmp_path)
    trainer.train()
    path = checkpoint.latest(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    ids = tok("What is 2 + 3?", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 5 or tok.eos_token_id in out[0].tolist()
    for name, p in trainer.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], p)


@pytest.mark.parametrize("reset", ["0", "1"], ids=["reference-is-start", "reference-reset"])
def test_resume_continues_with_the_same_data_and_weights(tmp_path, reset):
    full, cut = tmp_path / "full", tmp_path / "cut"
    extra = ("--run.save_every=2", f"--grpo.ref_reset_every={reset}")  # smoke has beta > 0: a KL reference
    GRPOTrainer(_cfg(full, *extra), full).train()
    # The "interrupted" run stops after its step-2 checkpoint; a half-written later checkpoint is ignored.
    GRPOTrainer(_cfg(cut, "--grpo.steps=2", *extra), cut).train()
    assert (checkpoint.latest(cut) / "reference.safetensors").exists() == (reset == "1")
    (cut / "checkpoints" / ".tmp-step-3").mkdir()
    cfg = load_config(cut / "config.toml", ["--grpo.steps=4"])
    resumed = GRPOTrainer(cfg, cut, resume_from=checkpoint.latest(cut))
    assert resumed.step == 2
    resumed.train()
    a, b = read_jsonl(full / "samples.jsonl"), read_jsonl(cut / "samples.jsonl")
    assert [(r["step"], r["prompt"], r["response"]) for r in a] == [
        (r["step"], r["prompt"], r["response"]) for r in b
    ]
    ra, rb = read_jsonl(full / "metrics.jsonl"), read_jsonl(cut / "metrics.jsonl")
    assert [r["step"] for r in rb] == [1, 2, 3, 4]
    for x, y in zip(ra, rb, strict=True):
        assert x["reward"] == pytest.approx(y["reward"]) and x["loss"] == pytest.approx(y["loss"], abs=1e-6)
    final_a = AutoModelForCausalLM.from_pretrained(checkpoint.latest(full)).state_dict()
    final_b = AutoModelForCausalLM.from_pretrained(checkpoint.latest(cut)).state_dict()
    for name in final_a:
        torch.testing.assert_close(final_a[name], final_b[name])


@pytest.mark.parametrize(
    "extra",
    [
        ["--grpo.advantage=rloo", "--grpo.loss=dapo", "--grpo.inner_updates=2", "--grpo.eps_high=0.28"],
        [
            "--grpo.advantage=dr_grpo",
            "--grpo.loss=dr_grpo",
            "--grpo.truncation=penalty",
            "--grpo.overlong_buffer=8",
        ],
        [
            "--grpo.dynamic_sampling=true",
            "--grpo.truncation=mask",
            "--optim.schedule=cosine",
            "--optim.warmup_steps=1",
        ],
        ["--grpo.beta=0.1", "--grpo.ref_reset_every=1", "--grpo.micro_batch_size=3"],
        ["--rollout.backend=hf", "--rollout.max_batch=5"],
        ["--rollout.block_size=4", "--rollout.num_blocks=256", "--rollout.max_prefill_tokens=16"],
        [
            "--reward.weights={math_accuracy = 1.0, language_consistency = 0.1, repetition_penalty = 0.1, "
            "cosine_length = 0.1}"
        ],
    ],
)
def test_algorithm_variants_run(tmp_path, extra):
    cfg = _cfg(tmp_path, "--grpo.steps=2", "--run.save_every=0", *extra)
    trainer = GRPOTrainer(cfg, tmp_path)
    trainer.train()
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert len(rows) == 2 and all(json.dumps(r) for r in rows)
    if cfg.grpo.truncation == "penalty":
        assert "reward/overlong" in rows[0]
    if cfg.grpo.dynamic_sampling:
        assert all(r["prompts_drawn"] >= r["groups_kept"] for r in rows)
    for name in cfg.reward.weights:  # each reward's mean is logged on its own
        assert all(f"reward/{name}" in r for r in rows)


def test_unscorable_samples_are_counted_and_left_out(tmp_path):
    cfg = _cfg(
        tmp_path,
        "--reward.weights={flaky_verifier = 1.0}",
        "--reward.max_unscorable=0.9",
        "--run.save_every=0",
    )
    GRPOTrainer(cfg, tmp_path).train()
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert all(0 < r["unscorable_frac"] < 1 for r in rows)
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["reward"]) for r in rows)


def test_too_many_unscorable_samples_stop_the_run(tmp_path):
    cfg = _cfg(tmp_path, "--reward.weights={broken_verifier = 1.0}", "--run.save_every=0")
    with pytest.raises(RuntimeError, match="reward.max_unscorable"):
        GRPOTrainer(cfg, tmp_path).train()


def test_default_backend_is_the_engine_in_the_trainers_precision(tmp_path):
    trainer = GRPOTrainer(_cfg(tmp_path, "--model.autocast=bfloat16"), tmp_path)
    assert isinstance(trainer.generator, Engine)
    assert trainer.generator.autocast is trainer.autocast is torch.bfloat16
    hf = GRPOTrainer(_cfg(tmp_path, "--rollout.backend=hf"), tmp_path).generator
    assert isinstance(hf, HFGenerator)


def test_engine_samples_under_the_trainers_bf16_autocast(tmp_path):
    trainer = GRPOTrainer(_cfg(tmp_path, "--model.autocast=bfloat16", "--run.save_every=0"), tmp_path)
    trainer.train_step()
    assert trainer.generator.stats.decode_tokens > 0


def test_auto_sized_kv_cache_holds_a_whole_step(tmp_path):
    trainer = GRPOTrainer(_cfg(tmp_path), tmp_path)  # rollout.num_blocks = 0: sized from the prompts
    engine, g = trainer.generator, trainer.cfg.grpo
    trainer.train_step()
    assert engine.stats.preemptions == 0 and engine.stats.decode_tokens > 0
    longest = max(len(c.prompt_ids) for c in trainer.collect()[0].completions)
    need = g.prompts_per_step * g.group_size * (longest + trainer.cfg.sampling.max_new_tokens)
    assert engine.blocks.num_blocks * engine.blocks.block_size >= need
    small = GRPOTrainer(_cfg(tmp_path / "small", "--rollout.num_blocks=12"), tmp_path / "small")
    small.train_step()  # the same step in a cache too small for it: correct, but with preemptions
    assert small.generator.stats.preemptions > 0


def test_vllm_backend_without_vllm_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    with pytest.raises(ImportError, match="pip install vllm"):
        GRPOTrainer(_cfg(tmp_path, "--rollout.backend=vllm"), tmp_path)
    assert not any(tmp_path.iterdir())  # failed before writing the checkpoint vLLM would load


def test_vllm_backend_loads_an_hf_checkpoint_of_the_policy(tmp_path, monkeypatch):
    built = []
    fake = types.ModuleType("vllm")
    fake.LLM = lambda **kwargs: built.append(kwargs)
    monkeypatch.setitem(sys.modules, "vllm", fake)
    trainer = GRPOTrainer(
        _cfg(tmp_path, "--rollout.backend=vllm", "--rollout.gpu_memory_utilization=0.5"), tmp_path
    )
    assert [k["gpu_memory_utilization"] for k in built] == [0.5]
    loaded = AutoModelForCausalLM.from_pretrained(built[0]["model"]).state_dict()
    assert Path(built[0]["model"]).parent == tmp_path
    for name, p in trainer.model.state_dict().items():
        torch.testing.assert_close(loaded[name], p)


def test_unsupported_architecture_falls_back_to_transformers(tmp_path, monkeypatch):
    from transformers import GPT2Config, GPT2LMHeadModel

    import ponder.stages.grpo as grpo_stage
    from ponder.model import load_model

    def gpt2(name, dtype=None, device=None):
        tok = load_model("tiny")[1]
        cfg = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(tok), eos_token_id=tok.eos_token_id)
        return GPT2LMHeadModel(cfg), tok

    monkeypatch.setattr(grpo_stage, "load_model", gpt2)
    trainer = GRPOTrainer(_cfg(tmp_path, "--grpo.beta=0.0"), tmp_path)
    assert isinstance(trainer.generator, HFGenerator)  # the default backend, for a model it cannot run


def test_collapse_warning_speaks_once_when_responses_collapse(capsys):
    from ponder.report import collapse_warning

    varied = {"step": 3, "groups_kept": 32, "distinct_frac": 0.9, "accuracy": 0.1, "format": 0.5}
    assert collapse_warning(varied, False) is False
    few = {"step": 3, "groups_kept": 4, "distinct_frac": 0.5}  # 2 strings for 4 prompts: not yet
    assert collapse_warning(few, False) is False
    assert capsys.readouterr().err == ""
    collapsed = {"step": 12, "groups_kept": 32, "distinct_frac": 2 / 32, "accuracy": 0.0, "format": 1.0}
    assert collapse_warning(collapsed, False) is True
    err = capsys.readouterr().err
    assert (
        "step 12" in err and "6.2% of the responses to different prompts" in err and "reward hacking" in err
    )
    assert collapse_warning(collapsed, True) is True  # once per run
    assert capsys.readouterr().err == ""
    one = {"step": 5, "groups_kept": 4, "distinct_frac": 0.25}  # one string for all 4 prompts
    assert collapse_warning(one, False) is True
    assert "25.0%" in capsys.readouterr().err


def test_sampler_and_trainer_log_probs_agree_in_float32(tmp_path):
    """The engine's log-probs of its sampled tokens equal the trainer's up to float32 noise (logged)."""
    trainer = GRPOTrainer(_cfg(tmp_path, "--run.save_every=0"), tmp_path)
    row, _ = trainer.train_step()
    assert 0 <= row["rollout_logp_gap"] < 1e-4, row["rollout_logp_gap"]
    assert row["rollout_logp_gap_max"] < 1e-3
    assert abs(row["rollout_kl"]) <= row["rollout_logp_gap"]
    assert "tis_capped_frac" not in row  # off by default


def _shift_sampler_logprobs(trainer: GRPOTrainer, shift: float) -> None:
    generate = trainer.generator.generate

    def shifted(prompts, sampling, seed):
        outs = generate(prompts, sampling, seed)
        for c in outs:
            c.logprobs = [lp + shift for lp in c.logprobs]
        return outs

    trainer.generator.generate = shifted


@pytest.mark.parametrize("shift, weight", [(-math.log(4.0), 2.0), (math.log(4.0), 0.25)])
def test_truncated_importance_sampling_weights_each_token(tmp_path, shift, weight):
    """Sampler log-probs lower than the trainer's by log 4 give weight 4, capped at 2; higher give 1/4: the
    policy gradient (ratio 1 on the first update, no KL term) scales by exactly that weight."""
    rows = {}
    for cap in (0.0, 2.0):
        torch.manual_seed(0)
        extra = ("--run.save_every=0", "--grpo.loss=dapo", "--grpo.beta=0", f"--grpo.tis_cap={cap}")
        cfg = _cfg(tmp_path / str(cap), *extra)
        trainer = GRPOTrainer(cfg, tmp_path / str(cap))
        _shift_sampler_logprobs(trainer, shift)
        rows[cap], _ = trainer.train_step()
    assert rows[0.0]["rollout_logp_gap"] == pytest.approx(abs(shift), abs=1e-4)
    assert rows[0.0]["rollout_kl"] == pytest.approx(shift, abs=1e-4)
    assert rows[2.0]["tis_capped_frac"] == (1.0 if weight == 2.0 else 0.0)
    assert rows[0.0]["grad_norm"] > 1e-3
    assert rows[2.0]["grad_norm"] == pytest.approx(weight * rows[0.0]["grad_norm"], rel=1e-3)
    assert rows[2.0]["reward"] == rows[0.0]["reward"]  # the same samples


def test_truncated_importance_sampling_needs_sampler_log_probs(tmp_path):
    cfg = _cfg(tmp_path, "--run.save_every=0", "--rollout.backend=hf", "--grpo.tis_cap=2")
    with pytest.raises(RuntimeError, match="grpo.tis_cap"):
        GRPOTrainer(cfg, tmp_path).train_step()
