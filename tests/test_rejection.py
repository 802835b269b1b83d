"""The rejection-sampling stage end to end: a scripted generator (exact counts), then a short real run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ponder.config import ConfigError
from ponder.data.files import DatasetError
from ponder.model import load_model
from ponder.rollout import Completion, HFGenerator
from ponder.rollout.engine import Engine
from ponder.stages.rejection import (
    MixConfig,
    RejectionConfig,
    build_generator,
    load_rejection_config,
    read_general,
    run_rejection,
)
from ponder.train.metrics import read_jsonl

SHARED_SEED_TASKS = Path(__file__).parents[2] / "shared" / "data" / "self_instruct_seed_tasks.jsonl"

QUESTIONS = [
    ("What is 1 + 1?", "2"),
    ("What is 2 + 3?", "5"),
    ("What is 3 + 4?", "7"),
    ("What is 4 + 5?", "9"),
]
LONG = "nine " * 500  # one 2499-character paragraph

# Completion texts (the prefill "<think>" comes before each), four per question, with what the stage does.
SCRIPT = {
    "What is 1 + 1?": [
        "Add  1 and 1. </think> <answer>2</answer>",  # kept
        "add 1 and 1. </think>\n<answer>2</answer>",  # duplicate of sample 0 (case and whitespace)
        "I guess.</think><answer>3</answer>",  # wrong_answer
        "the answer is 2",  # malformed
    ],
    "What is 2 + 3?": [
        "Two plus three. 所以答案是五。</think><answer>5</answer>",  # mixed_language
        "```python\nprint(2 + 3)\n```</think><answer>5</answer>",  # code_in_reasoning
        "2 + 3 = 5.</think><answer>5</answer>",  # kept
        "Two and three make five.</think><answer>5</answer>",  # kept
    ],
    "What is 3 + 4?": [f"Guess {i}.</think><answer>{i}</answer>" for i in range(4)],  # all wrong_answer
    "What is 4 + 5?": [
        f"{LONG}</think><answer>9</answer>",  # long_paragraph
        "4 + 5 = 9.</think><answer>9</answer>",  # kept
        "Four and five: nine.</think><answer>9</answer>",  # kept
        "Nine.</think><answer>9</answer>",  # kept, shortest
    ],
}
EXPECTED_REMOVED = {
    "malformed": 1,
    "wrong_answer": 5,
    "mixed_language": 1,
    "long_paragraph": 1,
    "code_in_reasoning": 1,
    "duplicate": 1,
    "cap_per_prompt": 1,
}
# (prompt id, sample index) kept with a cap of 2 per prompt, the shortest preferred
EXPECTED_KEPT = {
    ("questions-0", 0),
    ("questions-1", 2),
    ("questions-1", 3),
    ("questions-3", 1),
    ("questions-3", 3),
}


class ScriptedGenerator:
    """A `Generator` that answers the k-th copy of a question with the k-th scripted text."""

    def __init__(self, tokenizer, script: dict[str, list[str]]) -> None:
        self.tokenizer, self.script = tokenizer, script
        self.calls: list[tuple[int, int]] = []

    def generate(self, prompt_ids, sampling, seed):
        self.calls.append((len(prompt_ids), seed))
        seen: Counter[str] = Counter()
        out = []
        for ids in prompt_ids:
            text = self.tokenizer.decode(ids)
            question = next(q for q in self.script if q in text)
            reply = self.script[question][seen[question]]
            seen[question] += 1
            out.append(Completion(list(ids), list(range(len(reply))), reply, finished=True))
        return out


def _files(tmp_path: Path) -> tuple[Path, Path]:
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QUESTIONS))
    general = tmp_path / "general.jsonl"
    records = [
        {
            "id": f"seed_task_{i}",
            "instruction": f"Say hello {i} times.",
            "instances": [{"input": "", "output": "hello"}],
        }
        for i in range(8)
    ]
    records.append(
        {
            "id": "seed_task_8",
            "instruction": "Translate.",
            "instances": [{"input": "chat", "output": "cat"}, {"input": "chien", "output": "dog"}],
        }
    )
    general.write_text("".join(json.dumps(r) + "\n" for r in records))
    return questions, general


def _cfg(tmp_path: Path, *extra: str) -> RejectionConfig:
    questions, general = _files(tmp_path)
    return load_rejection_config(
        None,
        [
            "--model.name=tiny",
            "--task.name=file",
            f'--task.args={{path = "{questions}", shuffle = false}}',
            "--prompt.system=",
            "--rejection.prompts=0",
            "--rejection.progress=false",
            "--filters.cap_per_prompt=2",
            f"--mix.path={general}",
            "--mix.ratio=0.4",
            *extra,
        ],
    )


def _scripted_run(tmp_path: Path, *extra: str) -> tuple[dict, ScriptedGenerator]:
    cfg = _cfg(tmp_path, *extra)
    _, tokenizer = load_model("tiny")
    generator = ScriptedGenerator(tokenizer, SCRIPT)
    return run_rejection(cfg, tmp_path / "run", generator=generator), generator


def test_counts_rows_and_provenance_with_scripted_samples(tmp_path):
    stats, generator = _scripted_run(tmp_path)
    assert generator.calls == [(16, 0)]  # 4 prompts x n = 4, one call
    assert stats["generated"] == 16 and stats["prompts"] == 4 and stats["samples_per_prompt"] == 4
    assert stats["removed"] == EXPECTED_REMOVED
    assert list(stats["removed"]) == list(EXPECTED_REMOVED)  # pipeline order
    assert stats["kept"] == 5 == stats["generated"] - sum(stats["removed"].values())
    assert stats["coverage"] == {
        "prompts_with_samples": 3,
        "share": 0.75,
        "kept_per_prompt": {"0": 1, "1": 1, "2": 2},
    }
    run = tmp_path / "run"
    rows = read_jsonl(run / "data.jsonl")
    reasoning = [r for r in rows if r["kind"] == "reasoning"]
    assert {(r["prompt_id"], r["sample_index"]) for r in reasoning} == EXPECTED_KEPT
    by_key = {(r["prompt_id"], r["sample_index"]): r for r in reasoning}
    row = by_key[("questions-1", 2)]
    assert row["messages"] == [
        {"role": "user", "content": "What is 2 + 3?"},
        {"role": "assistant", "content": "<think>\n2 + 3 = 5.\n</think>\n\n5"},
    ]
    assert row["model"] == "tiny" and row["seed"] == 0 and row["reference"] == "5"
    assert row["num_tokens"] == len(SCRIPT["What is 2 + 3?"][2])
    assert "questions.jsonl" in row["source"]
    rejected = read_jsonl(run / "rejected.jsonl")
    assert Counter(r["filter"] for r in rejected) == EXPECTED_REMOVED
    assert json.loads((run / "stats.json").read_text())["removed"] == EXPECTED_REMOVED
    assert load_rejection_config(run / "config.toml") == _cfg(tmp_path)


def test_mix_ratio_adds_general_rows_with_provenance(tmp_path):
    stats, _ = _scripted_run(tmp_path)  # ratio 0.4 of 5 reasoning rows: 2 general rows
    rows = read_jsonl(tmp_path / "run" / "data.jsonl")
    general = [r for r in rows if r["kind"] == "general"]
    assert len(general) == 2 == stats["general"] and stats["rows"] == 7 == len(rows)
    assert stats["general_available"] == 10  # 8 records of one instance, one of two
    for row in general:
        assert row["model"] is None and row["seed"] == 0 and row["source"].endswith("general.jsonl")
        assert row["prompt_id"].startswith("seed_task_")
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert [r["kind"] for r in rows] != ["reasoning"] * 5 + ["general"] * 2  # shuffled together


@pytest.mark.parametrize(("option", "general"), [("--mix.fraction=0.5", 5), ("--mix.ratio=3", 10)])
def test_mix_fraction_and_the_files_size_bound_the_general_rows(tmp_path, option, general):
    stats, _ = _scripted_run(tmp_path, "--mix.ratio=0", option)
    assert stats["general"] == general and stats["rows"] == 5 + general
    assert stats["general_wanted"] == (5 if general == 5 else 15)


def test_mix_counts_round_half_up():
    assert MixConfig("g.jsonl", ratio=0.5).count(3) == 2  # 1.5 rows
    assert MixConfig("g.jsonl", ratio=1 / 3).count(600_000) == 200_000  # R1: 600k reasoning, 200k general
    assert MixConfig("g.jsonl", fraction=0.25).count(6) == 2  # 2 of 8 rows
    assert MixConfig("g.jsonl", fraction=0.25).count(5) == 2  # 1.67
    assert MixConfig().count(10) == 0
    assert MixConfig("g.jsonl", rows=3).count(0) == MixConfig("g.jsonl", rows=3).count(10) == 3  # fixed


def test_prompt_response_style_with_a_system_message_and_a_template(tmp_path):
    _scripted_run(
        tmp_path,
        "--output.style=prompt_response",
        "--output.system=Be brief.",
        '--output.template="{reasoning}\\n\\nAnswer: {answer}"',
        "--output.shuffle=false",
    )
    rows = read_jsonl(tmp_path / "run" / "data.jsonl")
    assert [r["kind"] for r in rows] == ["reasoning"] * 5 + ["general"] * 2
    first = rows[0]
    assert first == {
        "prompt": "What is 1 + 1?",
        "response": "Add  1 and 1.\n\nAnswer: 2",
        "system": "Be brief.",
        **{
            k: first[k] for k in ("kind", "prompt_id", "sample_index", "model", "seed", "source", "reference")
        },
        "num_tokens": len(SCRIPT["What is 1 + 1?"][0]),
    }


def test_config_errors_name_the_key(tmp_path):
    cases = {
        '--filters.order=["malformed", "nope"]': "filters.order",
        '--filters.order=["wrong_answer"]': "must include 'malformed'",
        "--filters.args={long_paragraph = {max_chars = -1}}": "filters.args.long_paragraph",
        "--filters.args={mixed_language = {threshold = 0.5}}": "filters.args.mixed_language",
        "--filters.cap_prefer=longest": "filters.cap_prefer",
        "--mix.fraction=1.0": "mix.fraction",
        "--mix.fraction=0.2": "mix.ratio and mix.fraction",
        "--mix.rows=2": "mix.ratio and mix.rows",
        "--mix.rows=-1": "mix.rows",
        "--output.template={answer}": "output.template",
        "--output.style=chatml": "output.style",
        "--rejection.samples_per_prompt=0": "rejection.samples_per_prompt",
        "--sampling.temperature=0": "sampling.temperature",
        "--rollout.backend=vllm": "rollout.backend",
        "--rejection.sample=3": "unknown key 'rejection.sample'",
    }
    for override, key in cases.items():
        extra = [override, '--filters.order=["malformed"]'] if "mixed_language =" in override else [override]
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            _cfg(tmp_path, *extra)
    with pytest.raises(ConfigError, match="rejection.prompts = 0"):
        load_rejection_config(None, ["--task.name=arithmetic", "--rejection.prompts=0"])
    with pytest.raises(ConfigError, match="mix.path"):
        load_rejection_config(None, ["--mix.path=x.jsonl"])


def test_read_general_formats_and_errors(tmp_path):
    path = tmp_path / "g.jsonl"
    records = [
        {"instruction": "Add.", "input": "1 2", "output": "3"},
        {"prompt": "Hi", "response": "Hello"},
        {"id": "t", "instruction": "Skip empty.", "instances": [{"input": "", "output": " "}]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert read_general(str(path)) == [("line-1", 0, "Add.\n\n1 2", "3"), ("line-2", 0, "Hi", "Hello")]
    path.write_text(json.dumps({"question": "q"}) + "\n")
    with pytest.raises(DatasetError, match=r"g\.jsonl: line 1: .*\['question'\]"):
        read_general(str(path))


@pytest.mark.skipif(
    not SHARED_SEED_TASKS.exists(), reason="needs ../shared/data/self_instruct_seed_tasks.jsonl"
)
def test_reads_the_self_instruct_seed_tasks():
    rows = read_general(str(SHARED_SEED_TASKS))
    assert len(rows) == 175 and rows[0][0] == "seed_task_0"
    assert any("\n\n" in prompt for _, _, prompt, _ in rows)  # instruction + input


def test_generator_is_the_engine_with_a_fallback(monkeypatch):
    from ponder.rollout import factory

    cfg = RejectionConfig()
    model, tokenizer = load_model("tiny")
    assert isinstance(build_generator(cfg, model, tokenizer, 16), Engine)
    monkeypatch.setattr(factory, "unsupported_reason", lambda m: "model_type 'gpt2' is not supported")
    assert isinstance(build_generator(cfg, model, tokenizer, 16), HFGenerator)


def test_short_real_run_on_the_engine_is_consistent_and_seeded(tmp_path):
    args = [
        "--model.name=tiny",
        "--task.args={digits = 1}",
        "--prompt.system=",
        "--rejection.prompts=3",
        "--rejection.samples_per_prompt=2",
        "--rejection.progress=false",
        "--sampling.max_new_tokens=8",
    ]
    cfg = load_rejection_config(None, args)
    first = run_rejection(cfg, tmp_path / "a")
    assert first["generated"] == 6
    assert first["kept"] + sum(first["removed"].values()) == 6
    assert len(read_jsonl(tmp_path / "a" / "data.jsonl")) == first["rows"] == first["kept"]
    rejected = read_jsonl(tmp_path / "a" / "rejected.jsonl")
    assert len(rejected) == sum(first["removed"].values())
    assert all(r["response"].startswith("<think>") for r in rejected)
    run_rejection(cfg, tmp_path / "b")
    assert read_jsonl(tmp_path / "b" / "rejected.jsonl") == rejected  # same seed, same samples
