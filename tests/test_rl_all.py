"""RL for all scenarios (DeepSeek-R1 sec. 2.3.4): mixed prompts, reward routing, the preference schedule.

Run: python -m pytest -q tests/test_rl_all.py
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from ponder.config import ConfigError, MixEntry, TaskConfig, load_config
from ponder.data.files import DatasetError, PromptTask
from ponder.data.tasks import task_from_config
from ponder.model import build_tiny_tokenizer
from ponder.rewards import Reference
from ponder.rewards.extract import summary_text
from ponder.rewards.routing import PreferenceModel, RoutedRewards, preference_active
from ponder.stages import grpo
from ponder.stages.grpo import GRPOTrainer
from ponder.train.metrics import read_jsonl

SMOKE = Path(__file__).parent.parent / "recipes" / "smoke.toml"

SEED_TASKS = [  # the self-instruct seed-task shape: instruction + instances [{input, output}]
    {"id": "t0", "instruction": "Name a fruit.", "instances": [{"input": "", "output": "Apple."}]},
    {
        "id": "t1",
        "instruction": "Sum the list.",
        "instances": [{"input": "1, 2", "output": "3"}, {"input": "4, 5", "output": "9"}],
    },
    {"id": "t2", "instruction": "Say hi.", "instances": [{"input": "", "output": "Hi."}]},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def seed_tasks(tmp_path) -> Path:
    return write_jsonl(tmp_path / "seed_tasks.jsonl", SEED_TASKS)


def mix_task(path: Path, weight: float, **args) -> TaskConfig:
    return TaskConfig(mix=[MixEntry("prompts", {"path": str(path), **args}, weight)])


def take(task, n: int, seed: int = 0, rank: int = 0, world: int = 1) -> list:
    return list(itertools.islice(task.items(seed, rank, world), n))


# ------------------------------------------------------------------------------------------- data


def test_prompt_task_reads_self_instruct_one_prompt_per_instance(seed_tasks):
    task = PromptTask(str(seed_tasks))
    assert [item.prompt for item in task.rows()] == [
        "Name a fruit.",
        "Sum the list.\n\n1, 2",
        "Sum the list.\n\n4, 5",
        "Say hi.",
    ]
    assert all(item.ref.meta["kind"] == "general" for item in task.rows())
    assert all(item.ref.meta["prompt"] == item.prompt and item.ref.answer == "" for item in task.rows())
    assert len({item.id for item in task.rows()}) == 4


def test_prompt_task_reads_prompt_only_files_and_names_a_missing_field(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"text": "Write a haiku."}, {"text": "Explain tides."}])
    task = PromptTask(str(path), format="plain", prompt_field="text")
    assert [item.prompt for item in task.rows()] == ["Write a haiku.", "Explain tides."]
    with pytest.raises(DatasetError, match=r"p.jsonl: line 1: missing field 'prompt'"):
        PromptTask(str(path))


def test_mixture_draws_general_items_at_the_configured_weight_deterministically(seed_tasks):
    task = task_from_config(mix_task(seed_tasks, 0.3))
    items = take(task, 3000, seed=1)
    general = [item for item in items if item.ref.meta["kind"] == "general"]
    assert abs(len(general) / len(items) - 0.3) < 0.03
    assert {item.ref.meta["kind"] for item in items} == {"general", "reasoning"}
    assert all(item.ref.meta["prompt"] == item.prompt for item in items)
    reasoning = [item for item in items if item.ref.meta["kind"] == "reasoning"]
    assert all(item.prompt.startswith("What is") and item.ref.answer for item in reasoning)
    assert [i.id for i in take(task, 200, seed=1)] == [i.id for i in items[:200]]  # same seed, same items
    assert [i.id for i in take(task, 200, seed=2)] != [i.id for i in items[:200]]
    # the main task alone yields the same reasoning items, in order, that the mixture interleaves
    alone = take(task_from_config(TaskConfig()), 50, seed=1)
    assert [i.prompt for i in reasoning[:50]] == [i.prompt for i in alone]


def test_mixture_shards_partition_the_single_stream(seed_tasks):
    task = task_from_config(mix_task(seed_tasks, 0.4))
    single = take(task, 40, seed=3)
    shards = [take(task, 20, seed=3, rank=r, world=2) for r in range(2)]
    assert [i.id for i in shards[0]] == [i.id for i in single[0::2]]
    assert [i.id for i in shards[1]] == [i.id for i in single[1::2]]


def test_a_bad_mix_entry_option_names_its_key(seed_tasks):
    with pytest.raises(ConfigError, match=r"task.mix\[0\].args.*unknown option.*size"):
        task_from_config(mix_task(seed_tasks, 0.2, size=3))


# ------------------------------------------------------------------------------------------- routing


class RecordingScorer:
    """Stands in for a RewardModelScorer: records every score_batch call, scores 1 + length / 10."""

    def __init__(self, path="", tokenizer=None, batch_size=16, device="cpu", max_length=2048):
        self.path, self.calls = str(path), []

    def score_batch(self, prompts, responses):
        self.calls.append((list(prompts), list(responses)))
        return [1 + len(r) / 10 for r in responses]


def test_summary_text_is_the_answer_or_what_follows_the_reasoning():
    assert summary_text("<think>x</think> <answer>Paris</answer>") == "Paris"
    assert summary_text("<think>x</think>\nIt is Paris.") == "It is Paris."
    assert summary_text("<think>still thinking") == ""
    assert summary_text(" Paris. ") == "Paris."


def test_general_items_go_to_reward_models_and_reasoning_items_to_rules():
    helpful, harmless = RecordingScorer(), RecordingScorer()
    rewards = RoutedRewards(
        {"accuracy": 1.0, "format": 0.5},
        {"tags": 0.1},
        [
            PreferenceModel("helpful", helpful, "answer", 2.0),
            PreferenceModel("harmless", harmless, "all", 1.0),
        ],
        always=("accuracy_lenient",),
    )
    refs = [
        Reference("7", "numeric", {"kind": "reasoning", "prompt": "What is 3 + 4?"}),
        Reference("", "exact", {"kind": "general", "prompt": "Name a fruit."}),
        Reference("9", "numeric"),  # no kind: reasoning
        Reference("", "exact", {"kind": "general", "prompt": "Say hi."}),
    ]
    responses = [
        "<think>3 + 4</think><answer>7</answer>",
        "<think>fruits: apple, pear</think> An apple.",
        "<think>?</think><answer>8</answer>",
        "<think>greet</think><answer>Hi!</answer>",
    ]
    scores = rewards.score(refs, responses)
    for i in (0, 2):  # reasoning: rule rewards, never a reward model
        assert {"accuracy", "format", "accuracy_lenient", "total"} == set(scores[i])
    assert scores[0]["total"] == 1.5 and scores[2]["total"] == 0.5
    for i in (1, 3):  # general: reward models (+ general rules), never the reasoning rules
        assert {"helpful", "harmless", "tags", "total"} == set(scores[i])
        answer_score, all_score = 1 + len(summary_text(responses[i])) / 10, 1 + len(responses[i]) / 10
        expected = 2.0 * answer_score + all_score + 0.1 * scores[i]["tags"]
        assert scores[i]["total"] == pytest.approx(expected)
    # one batched call per model for the whole rollout; helpfulness sees only the summary, harmlessness all
    assert helpful.calls == [(["Name a fruit.", "Say hi."], ["An apple.", "Hi!"])]
    assert harmless.calls == [(["Name a fruit.", "Say hi."], [responses[1], responses[3]])]
    rewards.close()


def test_preference_rewards_are_on_for_the_last_n_steps_only():
    assert [preference_active(step, 1700, 400) for step in (1, 1300, 1301, 1700)] == [
        False,
        False,
        True,
        True,
    ]
    assert all(preference_active(step, 10, 0) for step in range(1, 11))


# ------------------------------------------------------------------------------------------- config


def rm_dir(path: Path) -> Path:
    """A directory that passes the start-up check (the model itself is faked where this is used)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text("{}")
    return path


def rl_all_overrides(prompts: Path, helpful: Path, harmless: Path, weight: float = 0.5) -> list[str]:
    return [
        f'--task.mix=[{{name = "prompts", args = {{path = "{prompts}"}}, weight = {weight}}}]',
        f'--reward.models={{helpful = {{path = "{helpful}", target = "answer"}}, '
        f'harmless = {{path = "{harmless}", target = "all", weight = 0.5}}}}',
    ]


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (['--task.mix=[{name = "prompts", weight = 1.2}]'], "task.mix[0].weight = 1.2"),
        (
            ['--task.mix=[{name = "prompts", weight = 0.6}, {name = "linear", weight = 0.5}]'],
            "task.mix weights sum to 1.1",
        ),
        (['--task.mix=[{name = "promts", weight = 0.2}]'], "task.mix[0].name = 'promts'"),
        (['--task.mix=[{name = "prompts", weight = 0.2, kind = "chat"}]'], "task.mix[0].kind = 'chat'"),
        (
            ['--task.mix=[{name = "prompts", wieght = 0.2}]'],
            "unknown key 'task.mix[0].wieght' (did you mean 'weight'?)",
        ),
        (['--reward.models={helpful = {path = "d"}}'], "reward.models.helpful.target is missing"),
        (
            ['--reward.models={helpful = {path = "d", target = "summary"}}'],
            "reward.models.helpful.target = 'summary'",
        ),
        (['--reward.models={helpful = {target = "all"}}'], "reward.models.helpful.path is missing"),
        (
            ['--reward.models={helpful = {path = "d", target = "all", batch_size = 0}}'],
            "reward.models.helpful.batch_size = 0",
        ),
        (
            ['--reward.models={accuracy = {path = "d", target = "all"}}'],
            "reward.models.accuracy: the name 'accuracy' is taken",
        ),
        (
            ['--reward.models={helpful = {path = "d", target = "all"}}'],
            "task.mix has no entry of kind 'general'",
        ),
        (
            ['--task.mix=[{name = "prompts", weight = 0.2}]'],
            "neither reward.models nor reward.general_weights",
        ),
        (["--reward.models_last_steps=3"], "reward.models_last_steps = 3 but reward.models is empty"),
        (
            [
                '--task.mix=[{name = "prompts", weight = 0.2}]',
                '--reward.models={helpful = {path = "d", target = "all"}}',
                "--grpo.steps=5",
                "--reward.models_last_steps=6",
            ],
            "reward.models_last_steps = 6 is not allowed; it must be at most grpo.steps = 5",
        ),
    ],
)
def test_config_errors_name_the_key(overrides, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert fragment in str(err.value)


def test_rl_all_config_round_trips_through_the_run_directory(tmp_path, seed_tasks):
    from ponder.config import dump_toml

    cfg = load_config(
        None, [*rl_all_overrides(seed_tasks, tmp_path / "h", tmp_path / "s"), "--reward.models_last_steps=4"]
    )
    (tmp_path / "config.toml").write_text(dump_toml(cfg))
    assert load_config(tmp_path / "config.toml") == cfg
    assert cfg.reward.models["harmless"].weight == 0.5 and cfg.task.mix[0].resolved_kind() == "general"


def test_a_missing_reward_model_directory_fails_at_start_up(tmp_path, seed_tasks):
    cfg = load_config(
        SMOKE,
        [f"--run.dir={tmp_path}", *rl_all_overrides(seed_tasks, tmp_path / "nope", rm_dir(tmp_path / "s"))],
    )
    with pytest.raises(ConfigError, match=r"reward.models.helpful.path = '.*nope': no such directory"):
        GRPOTrainer(cfg, tmp_path / "run")
    cfg = load_config(
        SMOKE, [f"--run.dir={tmp_path}", *rl_all_overrides(seed_tasks, tmp_path, rm_dir(tmp_path / "s"))]
    )
    with pytest.raises(ConfigError, match=r"reward.models.helpful.path = .* has no config.json"):
        GRPOTrainer(cfg, tmp_path / "run")


# ------------------------------------------------------------------------------------------- training


def smoke_cfg(run_dir: Path, *extra: str):
    return load_config(
        SMOKE,
        [
            f"--run.dir={run_dir}",
            "--run.progress=false",
            "--run.save_every=0",
            "--grpo.steps=3",
            "--grpo.prompts_per_step=6",
            "--grpo.group_size=2",
            "--sampling.max_new_tokens=12",
            *extra,
        ],
    )


def test_grpo_with_mixture_routes_rewards_and_switches_preferences_on_for_the_last_step(
    tmp_path, seed_tasks, monkeypatch
):
    scorers: dict[str, RecordingScorer] = {}

    def fake(path, *args, **kwargs):
        scorers[str(path)] = RecordingScorer(path)
        return scorers[str(path)]

    monkeypatch.setattr(grpo, "RewardModelScorer", fake)
    helpful, harmless = rm_dir(tmp_path / "helpful"), rm_dir(tmp_path / "harmless")
    cfg = smoke_cfg(
        tmp_path,
        *rl_all_overrides(seed_tasks, helpful, harmless),
        "--reward.models_last_steps=1",
        "--prompt.instruction={question} Answer in tags.",
    )
    trainer = GRPOTrainer(cfg, tmp_path)
    calls_before = []
    for _ in range(2):  # before the last step: no general prompt, no reward-model call
        trainer.train_step()
        calls_before.append(len(scorers[str(helpful)].calls) + len(scorers[str(harmless)].calls))
    assert calls_before == [0, 0]
    position = trainer.data_position
    batch, _, _ = trainer.collect()  # the last step's batch, looked at directly
    assert batch.general_on and trainer.data_position - position == 6
    assert len(scorers[str(helpful)].calls) == len(scorers[str(harmless)].calls) == 1  # batched: once a step
    general = [i for i, item in enumerate(batch.items) if item.ref.meta["kind"] == "general"]
    assert 0 < len(general) < 6  # seed 0 draws both kinds at weight 0.5
    g = cfg.grpo.group_size
    responses = [cfg.prompt.prefill + c.text for c in batch.completions]
    general_responses = [responses[i * g + j] for i in general for j in range(g)]
    (h_prompts, h_texts), (_, s_texts) = scorers[str(helpful)].calls[0], scorers[str(harmless)].calls[0]
    assert h_prompts == [batch.items[i].prompt for i in general for _ in range(g)]
    assert h_texts == [summary_text(r) for r in general_responses]
    assert s_texts == general_responses
    for item in batch.items:  # the reasoning instruction is not wrapped around general prompts
        text = trainer.tokenizer.decode(trainer._encode(item))
        assert item.prompt in text and ("Answer in tags." in text) == (item.ref.meta["kind"] == "reasoning")
    for i, item in enumerate(batch.items):
        for s in batch.scores[i * g : (i + 1) * g]:  # a group is all one kind
            is_general = item.ref.meta["kind"] == "general"
            assert ("helpful" in s) == ("harmless" in s) == is_general
            assert ("accuracy" in s) == ("tags" in s) == (not is_general)


def test_grpo_logs_preference_rewards_only_in_the_last_steps(tmp_path, seed_tasks, monkeypatch):
    monkeypatch.setattr(grpo, "RewardModelScorer", RecordingScorer)
    helpful, harmless = rm_dir(tmp_path / "helpful"), rm_dir(tmp_path / "harmless")
    cfg = smoke_cfg(
        tmp_path, *rl_all_overrides(seed_tasks, helpful, harmless), "--reward.models_last_steps=1"
    )
    GRPOTrainer(cfg, tmp_path).train()
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["preference_on"] for r in rows] == [0.0, 0.0, 1.0]
    assert [r["general_frac"] > 0 for r in rows] == [False, False, True]
    for name in ("helpful", "harmless"):
        assert math.isnan(rows[0][f"reward/{name}"]) and math.isnan(rows[1][f"reward/{name}"])
        assert math.isfinite(rows[2][f"reward/{name}"]) and rows[2][f"reward/{name}"] >= 1
    assert all(math.isfinite(r["reward/accuracy_lenient"]) and math.isfinite(r["loss"]) for r in rows)
    samples = read_jsonl(tmp_path / "samples.jsonl")
    assert {s["kind"] for s in samples if s["step"] == 3} <= {"general", "reasoning"}


def test_resume_replays_the_mixture_with_general_prompts_skipped_before_the_window(
    tmp_path, seed_tasks, monkeypatch
):
    monkeypatch.setattr(grpo, "RewardModelScorer", RecordingScorer)
    helpful = rm_dir(tmp_path / "helpful")
    overrides = (*rl_all_overrides(seed_tasks, helpful, helpful), "--reward.models_last_steps=1")
    cfg = smoke_cfg(tmp_path / "full", *overrides, "--run.samples_per_step=6")
    full = GRPOTrainer(cfg, tmp_path / "full")
    ids = [[ex["id"] for ex in full.train_step()[1]] for _ in range(3)]
    assert all(i.startswith("arithmetic") for i in ids[0] + ids[1])  # general positions were skipped
    assert any(i.startswith("seed_tasks") for i in ids[2])
    cut = GRPOTrainer(cfg, tmp_path / "cut")
    cut.train_step(), cut.train_step()
    resumed = GRPOTrainer(cfg, tmp_path / "cut", resume_from=cut.save())
    assert resumed.step == 2 and resumed.data_position == cut.data_position > 12
    assert [ex["id"] for ex in resumed.train_step()[1]] == ids[2]


def tiny_reward_model_dir(path: Path) -> Path:
    """A seeded random one-label Llama classifier with the byte tokenizer, saved like a reward_model stage."""
    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        LlamaForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_short_grpo_run_with_a_real_tiny_reward_model_end_to_end(tmp_path, seed_tasks):
    rm = tiny_reward_model_dir(tmp_path / "rm")
    overrides = rl_all_overrides(seed_tasks, rm, rm, weight=0.5)
    cfg = smoke_cfg(tmp_path / "run", *overrides, "--reward.general_weights={tags = 0.1}", "--eval.size=2")
    trainer = GRPOTrainer(cfg, tmp_path / "run")
    assert len({id(m.scorer) for m in trainer.rewards.models}) == 1  # one directory, loaded once
    trainer.train()
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["preference_on"] == 1.0 for r in rows)
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["reward"]) for r in rows)
    assert sum(r["general_frac"] for r in rows) > 0
    general_steps = [r for r in rows if r["general_frac"] > 0]
    assert all(math.isfinite(r["reward/helpful"]) and math.isfinite(r["reward/tags"]) for r in general_steps)
    evals = read_jsonl(tmp_path / "run" / "eval.jsonl")
    assert evals and all(ex["id"].startswith("arithmetic") for ev in evals for ex in ev["examples"])
