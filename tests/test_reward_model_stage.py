"""The reward-model stage on a tiny random model (CPU, seconds): the Bradley-Terry loss, learning a
learnable preference, the saved model as a reward, exact resume, and data and config errors."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import tomllib
import torch

from ponder.config import ConfigError
from ponder.model import load_model
from ponder.rewards.reward_model import RewardModelScorer
from ponder.stages.reward_model import (
    PreferenceDataError,
    RewardModelConfig,
    RewardModelTrainer,
    bradley_terry_loss,
    build_reward_model,
    dump_config,
    encode_pairs,
    read_pairs,
    reward_model_config,
    run_reward_model,
    split_pairs,
)
from ponder.train import checkpoint
from ponder.train.metrics import read_jsonl

HH_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh_rlhf_harmless_test.jsonl"
WORDS = ["apple", "river", "stone", "cloud", "green", "table", "music", "light", "paper"]
FILLERS = ["window", "garden", "silver"]  # as long as the marker: length tells nothing


def marker_pairs(path: Path, n: int, seed: int = 0) -> Path:
    """A learnable preference: the chosen response holds the word "thanks", the rejected one holds a
    six-letter filler word in its place; both share the prompt and the other words."""
    rng = random.Random(seed)
    with path.open("w") as fh:
        for _ in range(n):
            words = rng.choices(WORDS, k=3)
            at = rng.randrange(4)
            chosen = [*words[:at], "thanks", *words[at:]]
            rejected = [*words[:at], rng.choice(FILLERS), *words[at:]]
            row = {
                "prompt": rng.choice(WORDS) + "?",
                "chosen": " ".join(chosen),
                "rejected": " ".join(rejected),
            }
            fh.write(json.dumps(row) + "\n")
    return path


def tiny_config(data: Path, **overrides) -> RewardModelConfig:
    keys = dict(
        model="tiny",
        data=str(data),
        prompt_field="prompt",
        eval_fraction=0.25,
        batch_size=16,
        micro_batch_size=16,
        lr=3e-3,
        max_len=128,
        save_every=0,
        progress=False,
        device="cpu",
        threads=1,  # tiny matrices: a second thread only adds synchronisation (30x slower on a busy CPU)
    )
    return RewardModelConfig(**{**keys, **overrides})


@pytest.fixture(autouse=True)
def _restore_threads():
    """`threads` sets torch's process-wide thread count; other test modules keep theirs."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------ the loss


def test_bradley_terry_loss_matches_a_hand_computed_value():
    chosen, rejected = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    loss, stats = bradley_terry_loss(chosen, rejected)
    # -log σ(1) = log(1 + e^-1), -log σ(-2) = log(1 + e^2)
    expected = (math.log1p(math.exp(-1)) + math.log1p(math.exp(2))) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert stats == pytest.approx({"accuracy": 0.5, "margin": -0.5})
    centered, _ = bradley_terry_loss(chosen, rejected, center_coef=0.1)
    assert float(centered) == pytest.approx(expected + 0.1 * (1**2 + 2**2) / 2, rel=1e-6)
    tie, tie_stats = bradley_terry_loss(torch.tensor([0.3]), torch.tensor([0.3]))
    assert float(tie) == pytest.approx(math.log(2)) and tie_stats["accuracy"] == 0.5


def test_micro_batches_accumulate_to_the_full_batch_step(tmp_path):
    data = marker_pairs(tmp_path / "pairs.jsonl", 40)
    rows, weights = [], []
    for micro in (16, 3):
        trainer = RewardModelTrainer(tiny_config(data, micro_batch_size=micro), tmp_path / f"run{micro}")
        rows.append(trainer.train_step())
        weights.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
    assert rows[0]["loss"] == pytest.approx(rows[1]["loss"], abs=1e-5)
    assert rows[0]["accuracy"] == pytest.approx(rows[1]["accuracy"])
    for name in weights[0]:
        torch.testing.assert_close(weights[0][name], weights[1][name], atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------------------------ learning


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short run on the marker preference: 120 training pairs, 40 held out, 2 epochs of 8 steps."""
    root = tmp_path_factory.mktemp("rm")
    cfg = tiny_config(marker_pairs(root / "pairs.jsonl", 160), epochs=2)
    summary = run_reward_model(cfg, root / "run")
    return cfg, root / "run", summary


def test_held_out_accuracy_goes_from_chance_to_above_0_9_on_cpu(trained):
    cfg, run_dir, summary = trained
    assert 0.2 <= summary["eval_accuracy_before"] <= 0.8
    assert summary["eval_accuracy_after"] > 0.9
    assert summary["eval_margin_after"] > summary["eval_margin_before"]
    assert (summary["train_pairs"], summary["eval_pairs"], summary["steps"]) == (120, 40, 16)
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    rows = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 17))
    assert {"loss", "accuracy", "margin", "lr", "time"} <= set(rows[0])
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert [r["step"] for r in read_jsonl(run_dir / "eval.jsonl")] == [0, 16]


def test_saved_model_loads_as_a_reward_and_ranks_held_out_pairs(trained):
    cfg, run_dir, summary = trained
    scorer = RewardModelScorer(run_dir / "model", batch_size=8, max_length=cfg.max_len)
    _, held_out = split_pairs(cfg)
    chosen = scorer.score_batch([p.chosen[0] for p in held_out], [p.chosen[1] for p in held_out])
    rejected = scorer.score_batch([p.rejected[0] for p in held_out], [p.rejected[1] for p in held_out])
    wins = [c > r for c, r in zip(chosen, rejected, strict=True)]
    assert sum(wins) / len(wins) > 0.9
    # The scorer reads the texts exactly as training did: same accuracy and margin as the stage's eval.
    margin = sum(c - r for c, r in zip(chosen, rejected, strict=True)) / len(wins)
    assert margin == pytest.approx(summary["eval_margin_after"], abs=1e-3)
    assert sum(wins) / len(wins) == pytest.approx(summary["eval_accuracy_after"])


def test_classifier_starts_from_the_causal_lm_backbone(tmp_path):
    cfg = tiny_config(marker_pairs(tmp_path / "pairs.jsonl", 8))
    model, tokenizer = build_reward_model(cfg)
    lm, _ = load_model("tiny")
    assert model.config.num_labels == 1 and model.config.pad_token_id == tokenizer.pad_token_id
    backbone = model.model.state_dict()
    for name, value in lm.model.state_dict().items():
        torch.testing.assert_close(backbone[name], value)
    plain, plain_tokenizer = build_reward_model(tiny_config(cfg.data, render="plain"))
    assert plain_tokenizer.chat_template is None
    assert RewardModelScorer(plain, plain_tokenizer).render("Q?", "A.") == "Q?\n\nA."


def test_train_layers_trains_only_the_top_blocks_and_the_head(tmp_path):
    cfg = tiny_config(marker_pairs(tmp_path / "pairs.jsonl", 40), train_layers=1)
    trainer = RewardModelTrainer(cfg, tmp_path / "run")  # tiny: 2 blocks
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train_step()
    after = trainer.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert "score.weight" in changed and any(k.startswith("model.layers.1.") for k in changed)
    assert all(k.startswith(("model.layers.1.", "model.norm.", "score.")) for k in changed), changed
    with pytest.raises(ConfigError, match=r"train_layers = 3 is not allowed; the model has 2 layers"):
        RewardModelTrainer(tiny_config(cfg.data, train_layers=3), tmp_path / "run3")


# ------------------------------------------------------------------------------------------------ resume


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    data = marker_pairs(tmp_path / "pairs.jsonl", 64)
    cfg = tiny_config(data, batch_size=8, micro_batch_size=4, save_every=2, schedule="cosine", warmup_steps=2)
    full, cut = tmp_path / "full", tmp_path / "cut"
    run_reward_model(cfg, full)

    class Crash(Exception):
        pass

    save = RewardModelTrainer.save

    def save_then_crash(self):
        path = save(self)
        if self.step == 4:
            raise Crash
        return path

    monkeypatch.setattr(RewardModelTrainer, "save", save_then_crash)
    with pytest.raises(Crash):
        run_reward_model(cfg, cut)
    monkeypatch.undo()
    assert checkpoint.latest(cut).name == "step-4"
    run_reward_model(cfg, cut, resume=True)

    a, b = read_jsonl(full / "metrics.jsonl"), read_jsonl(cut / "metrics.jsonl")
    assert [r["step"] for r in b] == list(range(1, 7))
    for x, y in zip(a, b, strict=True):
        assert (x["loss"], x["lr"], x["margin"]) == pytest.approx((y["loss"], y["lr"], y["margin"]), abs=1e-6)
    assert read_jsonl(cut / "eval.jsonl")[0]["step"] == 0  # the before-training row survives the resume
    final_a = RewardModelScorer(full / "model").model.state_dict()
    final_b = RewardModelScorer(cut / "model").model.state_dict()
    for name in final_a:
        torch.testing.assert_close(final_a[name], final_b[name])


def test_resume_refuses_a_changed_config(tmp_path):
    cfg = tiny_config(marker_pairs(tmp_path / "pairs.jsonl", 24), save_every=1)
    run_reward_model(cfg, tmp_path / "run")
    with pytest.raises(ConfigError, match=r"reward_model\.lr"):
        run_reward_model(tiny_config(cfg.data, save_every=1, lr=1e-4), tmp_path / "run", resume=True)


# ------------------------------------------------------------------------------------------------ data


def test_hh_dialogues_split_at_the_last_assistant_turn(tmp_path):
    chosen = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: a joke?\n\nAssistant: Why did the chicken..."
    rejected = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: a joke?\n\nAssistant: No."
    path = tmp_path / "hh.jsonl"
    path.write_text(json.dumps({"chosen": chosen, "rejected": rejected}) + "\n")
    (pair,) = read_pairs(path, RewardModelConfig(data=str(path)))
    prompt = "hi\n\nAssistant: hello\n\nHuman: a joke?"  # earlier turns stay in the prompt as text
    assert pair.chosen == (prompt, "Why did the chicken...") and pair.rejected == (prompt, "No.")
    assert pair.where == f"{path}:1"


def test_left_truncation_keeps_the_end_right_keeps_the_start_and_both_count(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"prompt": "q", "chosen": "a" * 100 + "END", "rejected": "b"},
        {"prompt": "q", "chosen": "c", "rejected": "d"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for side, kept in (("left", "END<|im_end|>\n"), ("right", "<|im_start|>")):
        cfg = RewardModelConfig(data=str(path), prompt_field="prompt", max_len=40, truncation=side)
        model, tokenizer = build_reward_model(tiny_config(path))
        scorer = RewardModelScorer(model, tokenizer, max_length=1 << 30)
        encoded = encode_pairs(read_pairs(path, cfg), scorer, cfg)
        assert encoded.truncated == 1 and len(encoded.chosen[0]) == 40
        text = tokenizer.decode(encoded.chosen[0])
        assert text.endswith(kept) if side == "left" else text.startswith(kept)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prompt": "q", "chosen": "a", "rejected": ', "invalid JSON"),
        ('["q", "a", "b"]', "expected a JSON object"),
        ('{"prompt": "q", "chosen": "a"}', "missing field 'rejected'"),
        ('{"prompt": "q", "chosen": "a", "rejected": 3}', "field 'rejected' is int"),
        ('{"prompt": "q", "chosen": "same", "rejected": "same"}', "states no preference"),
    ],
)
def test_bad_lines_name_the_file_and_line(tmp_path, line, message):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n\n' + line + "\n")
    cfg = RewardModelConfig(data=str(path), prompt_field="prompt")
    with pytest.raises(PreferenceDataError, match=message) as err:
        read_pairs(path, cfg)
    assert f"{path}:3:" in str(err.value)


def test_data_errors_stop_a_run_and_name_the_file(tmp_path):
    good = tmp_path / "pairs.jsonl"
    hh = {"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: b"}
    good.write_text(json.dumps(hh) + "\n")
    (tmp_path / "eval.jsonl").write_text(json.dumps({**hh, "rejected": "b"}) + "\n")
    cfg = tiny_config(good, prompt_field="", eval_data=str(tmp_path / "eval.jsonl"))
    with pytest.raises(PreferenceDataError, match=r"eval\.jsonl:1: rejected text has no assistant marker"):
        run_reward_model(cfg, tmp_path / "r")
    with pytest.raises(PreferenceDataError, match="no such file"):
        run_reward_model(tiny_config(tmp_path / "missing.jsonl"), tmp_path / "r")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(PreferenceDataError, match="empty.jsonl: no preference pairs"):
        read_pairs(tmp_path / "empty.jsonl", tiny_config(good))


def test_split_is_seeded_by_pair_and_caps_apply(tmp_path):
    cfg = tiny_config(marker_pairs(tmp_path / "pairs.jsonl", 100), eval_fraction=0.3, max_pairs=50)
    train, held_out = split_pairs(cfg)
    assert (len(train), len(held_out)) == (50, 30)
    assert split_pairs(cfg) == (train, held_out)
    assert not {p.where for p in train} & {p.where for p in held_out}
    other, _ = split_pairs(tiny_config(cfg.data, eval_fraction=0.3, max_pairs=50, seed=1))
    assert [p.where for p in other] != [p.where for p in train]


@pytest.mark.skipif(not HH_DATA.exists(), reason=f"{HH_DATA} is not here (shared reference data)")
def test_reads_the_hh_rlhf_harmless_file():
    pairs = read_pairs(HH_DATA, RewardModelConfig(data=str(HH_DATA)))
    assert len(pairs) == 2312
    assert all(p.chosen[1] != p.rejected[1] or p.chosen[0] != p.rejected[0] for p in pairs)
    assert not any(p.chosen[0].startswith("Human:") for p in pairs)


# ------------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"data": ""}, r"reward_model\.data is required"),
        ({"max_len": 0}, r"reward_model\.max_len = 0"),
        ({"truncation": "middle"}, r"reward_model\.truncation = 'middle'.*'left', 'right'"),
        ({"eval_fraction": 1.0}, r"reward_model\.eval_fraction"),
        ({"schedule": "linear"}, r"reward_model\.schedule"),
        ({"lr": 0.0}, r"reward_model\.lr"),
        ({"rejected_field": "chosen"}, r"reward_model\.rejected_field"),
        ({"autocast": "fp8"}, r"reward_model\.autocast"),
        ({"train_layers": -1}, r"reward_model\.train_layers = -1"),
    ],
)
def test_config_errors_name_the_key(keys, message):
    with pytest.raises(ConfigError, match=message):
        RewardModelConfig(**{"data": "pairs.jsonl", **keys})


def test_config_tables_are_checked_and_round_trip():
    with pytest.raises(ConfigError, match=r"unknown key 'stages\.rm\.max_lenn' \(did you mean 'max_len'\?\)"):
        reward_model_config({"data": "x.jsonl", "max_lenn": 5}, "stages.rm.")
    with pytest.raises(ConfigError, match=r"reward_model\.epochs = 'two'.*integer"):
        reward_model_config({"data": "x.jsonl", "epochs": "two"})
    cfg = RewardModelConfig(data="x.jsonl", lr=2e-5, human_marker="\n\nHuman:", progress=False)
    assert reward_model_config(tomllib.loads(dump_config(cfg))) == cfg
