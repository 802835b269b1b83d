"""`ponder eval` end to end on tiny random models: files, summaries that agree with their rows, exact
figures from scripted responses (numeric and HumanEval-style code), and bad input named by file and line."""

import json
from collections import Counter

import pytest

import ponder.evaluate.benchmark as benchmark
from ponder.cli import main
from ponder.evaluate.metrics import mean_ci95, pass_at_k
from ponder.evaluate.problems import detect_format
from ponder.rollout.base import Completion
from ponder.train.metrics import read_jsonl

GSM8K = [
    {"question": "Tom has 2 apples and buys 3 more. How many apples?", "answer": "2 + 3 = 5\n#### 5"},
    {"question": "A box holds 4 pens. How many pens in 2 boxes?", "answer": "4 * 2 = 8\n#### 8"},
    {"question": "Sam had 1,200 coins and spent 200. How many are left?", "answer": "#### 1,000"},
]
AIME = [
    {"id": 1, "problem": "Q1: find one thousand.", "answer": "1000"},
    {"id": 2, "problem": "Q2: find five.", "answer": 5.0},
]
ADD_PROMPT = 'def add(a, b):\n    """Return a + b."""\n'
ADD_TEST = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n"
HUMANEVAL = [
    {
        "task_id": "Toy/0",
        "prompt": ADD_PROMPT,
        "canonical_solution": "    return a + b\n",
        "test": ADD_TEST,
        "entry_point": "add",
    }
]
FAST = ["--system", "", "--max-new-tokens", "6"]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def run_eval(tmp_path, data, *extra):
    out = tmp_path / "out"
    code = main(["eval", "--data", str(data), "--out", str(out), *extra])
    return code, out


def test_two_models_one_table_and_summaries_agree_with_rows(tmp_path, capsys):
    data = write_jsonl(tmp_path / "gsm.jsonl", GSM8K)
    code, out = run_eval(tmp_path, data, "--model", "tiny", "--model", "tiny:micro", "--k", "2", *FAST)
    assert code == 0
    printed = capsys.readouterr().out
    assert "3 problems, format gsm8k" in printed
    comparison = json.loads((out / "comparison.json").read_text())
    assert [s["model"] for s in comparison] == ["tiny", "tiny:micro"]
    table = (out / "comparison.md").read_text()
    assert "| tiny |" in table and "| tiny:micro |" in table and "cons@2" in table and table in printed
    for slug, summary in zip(["tiny", "tiny-micro"], comparison, strict=True):
        assert json.loads((out / slug / "summary.json").read_text()) == summary
        rows = read_jsonl(out / slug / "results.jsonl")
        assert [r["gold"] for r in rows] == ["5", "8", "1000"]
        assert all(len(r["responses"]) == len(r["answers"]) == len(r["correct"]) == 2 for r in rows)
        assert summary["problems"] == 3 and summary["k"] == 2 and summary["format"] == "gsm8k"
        assert summary["pass@1"] == pytest.approx(sum(r["pass@1"] for r in rows) / 3)
        assert summary["pass@2"] == pytest.approx(sum(pass_at_k(2, r["n_correct"], 2) for r in rows) / 3)
        assert summary["cons@2"] == pytest.approx(sum(r["cons"] for r in rows) / 3)
        tokens = [t for r in rows for t in r["tokens"]]
        assert summary["response_tokens_max"] == max(tokens) <= 6
        assert summary["truncated"] == pytest.approx(sum(not f for r in rows for f in r["finished"]) / 6)
        assert all(r["responses"][0].startswith("<think>") for r in rows)


class Scripted:
    """A generator that answers each problem (found by its text in the prompt) with scripted responses."""

    def __init__(self, tokenizer, script):
        self.tokenizer, self.script = tokenizer, script

    def generate(self, prompt_ids, sampling, seed):
        seen = Counter()
        out = []
        for ids in prompt_ids:
            prompt = self.tokenizer.decode(ids)
            key = next(q for q in self.script if q in prompt)
            text, finished = self.script[key][seen[key]]
            seen[key] += 1
            out.append(Completion(ids, list(range(len(text))), text, finished))
        return out


def scripted(monkeypatch, script):
    monkeypatch.setattr(
        benchmark, "make_generator", lambda model, tokenizer, *rest: Scripted(tokenizer, script)
    )


def test_figures_from_scripted_responses(tmp_path, monkeypatch, capsys):
    script = {  # responses follow the prefilled "<think>"
        "Q1": [
            (" hmm</think><answer>7</answer>", True),  # wrong
            (" sum</think><answer>1,000</answer>", True),  # right, strict, formatted
            (" wait, let me check</think> so \\boxed{1000.0}", True),  # right (boxed), not strict; reflects
            (" never closes the think: 1000", False),  # truncated; an unclosed think is not an answer
        ],
        "Q2": [
            ("a</think><answer>6</answer>", True),
            ("b</think><answer>6.0</answer>", True),
            ("c</think><answer>5</answer>", True),
            ("d</think><answer>6</answer>", True),
        ],
    }
    scripted(monkeypatch, script)
    data = write_jsonl(tmp_path / "aime_like.jsonl", AIME)
    code, out = run_eval(tmp_path, data, "--model", "tiny:micro", "--k", "4", "--system", "")
    assert code == 0
    assert "2 problems, format aime" in capsys.readouterr().out
    rows = read_jsonl(out / "tiny-micro" / "results.jsonl")
    assert rows[0]["answers"] == ["7", "1,000", "1000.0", None]
    assert rows[0]["correct"] == [False, True, True, False]
    assert rows[0]["strict"] == [False, True, False, False]
    # 1,000 and 1000.0 are one answer and outvote 7 (as strings, the 1-1-1 tie would go to "7")
    assert (rows[0]["voted"], rows[0]["cons"]) == ("1,000", True)
    assert (rows[1]["voted"], rows[1]["cons"], rows[1]["n_correct"]) == ("6", False, 1)
    s = json.loads((out / "tiny-micro" / "summary.json").read_text())
    assert s["pass@1"] == pytest.approx((0.5 + 0.25) / 2)
    assert s["pass@1_ci95"] == pytest.approx(mean_ci95([0.5, 0.25])[1])
    assert s["pass@2"] == pytest.approx(((1 - 1 / 6) + (1 - 3 / 6)) / 2)
    assert s["pass@4"] == 1.0
    assert s["cons@4"] == 0.5
    assert s["accuracy_strict"] == pytest.approx(0.25)
    assert s["format_rate"] == pytest.approx(6 / 8)
    assert s["truncated"] == pytest.approx(1 / 8)
    assert s["reflection"] == pytest.approx(1 / 8)
    assert s["response_tokens_max"] == len(" wait, let me check</think> so \\boxed{1000.0}")


def test_humaneval_shape_runs_the_tests_in_the_sandbox(tmp_path, monkeypatch, capsys):
    right = "```python\ndef add(a, b):\n    return a + b\n```"
    wrong = "```python\ndef add(a, b):\n    return a * b\n```"
    scripted(
        monkeypatch, {"def add": [(f"</think><answer>{right}</answer>", True), (f"</think>{wrong}", True)]}
    )
    data = write_jsonl(tmp_path / "humaneval_like.jsonl", HUMANEVAL)
    code, out = run_eval(tmp_path, data, "--model", "tiny:micro", "--k", "2", "--system", "")
    assert code == 0
    assert "1 problems, format code" in capsys.readouterr().out
    row = read_jsonl(out / "tiny-micro" / "results.jsonl")[0]
    assert row["id"] == "Toy/0" and row["correct"] == [True, False] and row["strict"] == [True, False]
    s = json.loads((out / "tiny-micro" / "summary.json").read_text())
    assert s["pass@1"] == 0.5 and s["pass@2"] == 1.0 and s["cons@2"] is None
    assert s["pass@1_ci95"] is None  # one problem: no spread to estimate


@pytest.mark.parametrize(
    "rows, picked, limit", [(AIME, "1 problems, format aime", "1"), (HUMANEVAL, "format code", "5")]
)
def test_auto_format_with_a_real_tiny_model(tmp_path, capsys, rows, picked, limit):
    data = write_jsonl(tmp_path / "bench.jsonl", rows)
    code, out = run_eval(tmp_path, data, "--model", "tiny:micro", "--k", "2", "--limit", limit, *FAST)
    assert code == 0 and picked in capsys.readouterr().out
    assert len(read_jsonl(out / "tiny-micro" / "results.jsonl")) == min(int(limit), len(rows))


@pytest.mark.parametrize(
    "records, expected",
    [
        (GSM8K, "gsm8k"),
        (AIME, "aime"),
        (HUMANEVAL, "code"),
        ([{"problem": "p", "solution": "so \\boxed{\\frac{1}{2}}"}], "math"),  # MATH / Minerva
        (
            [{"problem": "p", "answer": "3"}, {"problem": "q", "answer": "\\sqrt{2}"}],
            "math",
        ),  # not all numbers
    ],
)
def test_detect_format_from_fields_and_answers(records, expected):
    assert detect_format(records, "f.jsonl: line 1")[0] == expected


def test_bad_input_exits_2_naming_the_file_and_line(tmp_path, capsys):
    missing = tmp_path / "nope.jsonl"
    assert run_eval(tmp_path, missing, "--model", "tiny:micro")[0] == 2
    assert f"{missing}: no such file" in capsys.readouterr().err

    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(GSM8K[0]) + "\n{not json\n")
    assert run_eval(tmp_path, broken, "--model", "tiny:micro")[0] == 2
    assert f"{broken}: line 2: invalid JSON" in capsys.readouterr().err

    odd = write_jsonl(tmp_path / "odd.jsonl", [{"text": "hello", "label": "greeting"}])
    assert run_eval(tmp_path, odd, "--model", "tiny:micro")[0] == 2
    err = capsys.readouterr().err
    assert f"{odd}: line 1: cannot tell the benchmark format" in err and "'label'" in err

    no_answer = write_jsonl(tmp_path / "no_answer.jsonl", [GSM8K[0], {"question": "2 + 2?"}])
    assert run_eval(tmp_path, no_answer, "--model", "tiny:micro", "--format", "gsm8k")[0] == 2
    assert f"{no_answer}: line 2: missing field 'answer'" in capsys.readouterr().err

    data = write_jsonl(tmp_path / "gsm.jsonl", GSM8K)
    assert run_eval(tmp_path, data, "--model", str(tmp_path / "no_model"))[0] == 2
    assert "no_model" in capsys.readouterr().err
    assert run_eval(tmp_path, data, "--model", "tiny:micro", "--k", "0")[0] == 2
    assert "--k = 0 must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # argparse: an unknown --format choice
        run_eval(tmp_path, data, "--model", "tiny:micro", "--format", "nonsense")
    assert exit_info.value.code == 2
    assert "invalid choice: 'nonsense'" in capsys.readouterr().err


def test_a_second_data_file_is_an_error_not_silently_used(tmp_path, capsys):
    a = write_jsonl(tmp_path / "a.jsonl", GSM8K)
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--model", "tiny:micro", "--data", str(a), "--data", str(a)])
    assert exc.value.code == 2
    assert "--data given twice" in capsys.readouterr().err
