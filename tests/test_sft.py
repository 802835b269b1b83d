"""The SFT stage on a tiny random model: completion-only loss, packing equivalence, memorisation, exact
resume, an output model plain transformers loads, and clear errors for bad data and bad config."""

import json
from pathlib import Path

import pytest
import tomllib
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ponder.config import ConfigError
from ponder.data.files import DatasetError
from ponder.model import load_model
from ponder.stages.sft import (
    Example,
    SFTDataConfig,
    SFTTrainConfig,
    SFTTrainer,
    load_examples,
    load_sft_config,
    masked_nll,
    micro_batches,
    plan_batches,
    rows_nll,
    run_sft,
    sft_config_from_dict,
)
from ponder.train import checkpoint
from ponder.train.metrics import read_jsonl

FRUITS = [("red?", "apple"), ("yellow?", "banana"), ("purple?", "plum"), ("green?", "kiwi")]


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _fruits(tmp_path: Path) -> Path:
    return _jsonl(tmp_path / "fruits.jsonl", [{"prompt": p, "response": r} for p, r in FRUITS])


def _cfg(data: Path, *extra: str):
    base = [f"--data.path={data}", "--model.name=tiny", "--train.progress=false", "--optim.lr=1e-2"]
    return load_sft_config(None, [*base, *extra])


def _tokenizer():
    return load_model("tiny:micro")[1]


# ------------------------------------------------------------------------------------------- data


def test_chat_rows_train_only_the_assistant_turns(tmp_path):
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
    ]
    path = _jsonl(tmp_path / "chat.jsonl", [{"messages": messages}])
    tok = _tokenizer()
    (ex,) = load_examples(path, SFTDataConfig(path=str(path)), tok).examples
    trained = [i for i, t in zip(ex.ids, ex.trained, strict=True) if t]
    context = [i for i, t in zip(ex.ids, ex.trained, strict=True) if not t]
    assert tok.decode(trained) == "hello<|im_end|>\n4<|im_end|>\n"
    assert tok.decode(ex.ids) == tok.apply_chat_template(messages, tokenize=False)
    assert tok.decode(context).endswith("<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n")


def test_prompt_response_rows_in_chat_and_raw_formats(tmp_path):
    path = _jsonl(tmp_path / "pr.jsonl", [{"q": "red?", "a": "apple"}])
    tok = _tokenizer()
    fields = {"prompt_field": "q", "response_field": "a", "system": "sys"}
    (chat,) = load_examples(path, SFTDataConfig(path=str(path), **fields), tok).examples
    assert tok.decode(chat.ids) == (
        "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nred?<|im_end|>\n<|im_start|>assistant\n"
        "apple<|im_end|>\n"
    )
    (raw,) = load_examples(path, SFTDataConfig(path=str(path), format="raw", **fields), tok).examples
    assert tok.decode([i for i, t in zip(raw.ids, raw.trained, strict=True) if not t]) == "sys\nred?"
    assert tok.decode([i for i, t in zip(raw.ids, raw.trained, strict=True) if t]) == "apple<|im_end|>"
    assert raw.ids[-1] == tok.eos_token_id  # raw examples end with EOS so the model learns to stop


def test_long_examples_are_truncated_and_counted(tmp_path):
    path = _jsonl(
        tmp_path / "long.jsonl",
        [{"prompt": "p" * 10, "response": "r" * 50}, {"prompt": "q" * 40, "response": "s"}],
    )
    data = load_examples(path, SFTDataConfig(path=str(path), format="raw", max_len=20), _tokenizer())
    assert data.truncated == 2 and data.dropped == 1  # the second keeps no response token within 20
    assert [len(e.ids) for e in data.examples] == [20]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prompt": "a", "response": "b"', "line 2: invalid JSON"),
        ('{"prompt": "a"}', "line 2: missing field 'response'"),
        ('{"question": "a", "answer": "b"}', "line 2: missing field 'messages'"),
        ('{"prompt": "a", "response": "  "}', "line 2: empty response"),
        (
            '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": ""}]}',
            "line 2: empty",
        ),
        ('{"messages": [{"role": "user", "content": "a"}]}', "line 2: no assistant message"),
        ('{"messages": [{"role": "user"}]}', "line 2: message 0 must be an object"),
        ('{"prompt": 3, "response": "b"}', "line 2: field 'prompt' must be a string"),
        ("[1, 2]", "line 2: expected an object"),
    ],
)
def test_bad_data_errors_name_the_file_and_line(tmp_path, line, message):
    path = _jsonl(tmp_path / "bad.jsonl", ['{"prompt": "ok", "response": "fine"}', line])
    with pytest.raises(DatasetError, match=message) as err:
        load_examples(path, SFTDataConfig(path=str(path)), _tokenizer())
    assert str(path) in str(err.value)


def test_bad_data_fails_the_run_before_training(tmp_path):
    path = _jsonl(tmp_path / "bad.jsonl", ['{"prompt": "a", "response": "b"}', "not json"])
    with pytest.raises(DatasetError, match=r"bad.jsonl: line 2: invalid JSON"):
        run_sft(_cfg(path), tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_plan_batches_by_examples_and_tokens():
    lengths = [5, 5, 5, 5, 30, 5]
    order = list(range(6))
    assert plan_batches(lengths, order, 4, 0) == [[0, 1, 2, 3], [4, 5]]
    assert plan_batches(lengths, order, 0, 12) == [[0, 1], [2, 3], [4], [5]]  # 30 > 12: a batch of its own
    assert plan_batches(lengths, order, 3, 12) == [[0, 1], [2, 3], [4], [5]]
    assert plan_batches(lengths, order, 1, 100) == [[i] for i in order]


# ------------------------------------------------------------------------------------------- loss


def test_loss_is_the_mean_over_completion_tokens_only():
    torch.manual_seed(0)
    logits_NTV = torch.randn(2, 5, 7, requires_grad=True)
    ids_NT = torch.randint(0, 7, (2, 5))
    targets_NT1 = torch.tensor([[False, False, True, True], [False, True, True, False]])
    loss = masked_nll(logits_NTV, ids_NT, targets_NT1)
    logp = logits_NTV.log_softmax(-1)
    expected = -sum(logp[n, t, ids_NT[n, t + 1]] for n, t in targets_NT1.nonzero().tolist())
    torch.testing.assert_close(loss, expected)
    # Other labels at prompt (untrained) positions leave the loss unchanged...
    used_NT = torch.cat([torch.zeros(2, 1, dtype=torch.bool), targets_NT1], 1)  # ids that are labels
    other_NT = torch.where(used_NT, ids_NT, (ids_NT + 1) % 7)
    assert (other_NT != ids_NT).any()
    torch.testing.assert_close(masked_nll(logits_NTV, other_NT, targets_NT1), loss)
    # ...and the positions predicting them get no gradient; the completion positions do.
    loss.backward()
    grad_norm_NT = logits_NTV.grad.abs().sum(-1)[:, :-1]
    assert (grad_norm_NT[~targets_NT1] == 0).all() and (grad_norm_NT[targets_NT1] > 0).all()


def test_model_loss_equals_a_hand_computed_completion_loss():
    model, tok = load_model("tiny")
    prompt, completion = tok("red?")["input_ids"], tok("apple")["input_ids"]
    ex = Example(prompt + completion, [False] * len(prompt) + [True] * len(completion))
    (rows,) = micro_batches([ex], SFTTrainConfig(), 64, tok.pad_token_id, torch.device("cpu"))
    nll, count = rows_nll(model, rows)
    logp = model(input_ids=torch.tensor([ex.ids])).logits[0].log_softmax(-1)
    p = len(prompt)
    expected = -sum(logp[p - 1 + i, c] for i, c in enumerate(completion))
    assert count == len(completion)
    torch.testing.assert_close(nll, expected)


def _batch_loss_and_grads(model, examples, cfg, tok):
    model.zero_grad(set_to_none=True)
    tokens = sum(e.targets for e in examples)
    total = 0.0
    mbs = micro_batches(examples, cfg, 64, tok.pad_token_id, torch.device("cpu"))
    for mb in mbs:
        nll, _ = rows_nll(model, mb)
        (nll / tokens).backward()
        total += float(nll.detach())
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    return total / tokens, grads, mbs


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_packing_gives_the_loss_and_gradients_of_unpacked_batches(implementation):
    model, tok = load_model("tiny")
    model.set_attn_implementation(implementation)
    texts = [
        ("What is 2+2?", "4"),
        ("hi", "hello there"),
        ("x", "y" * 20),
        ("a longer prompt here", "ok"),
        ("q", "r"),
    ]
    examples = []
    for p, c in texts:
        pi, ci = tok(p)["input_ids"], tok(c)["input_ids"]
        examples.append(Example(pi + ci, [False] * len(pi) + [True] * len(ci)))
    plain, g_plain, _ = _batch_loss_and_grads(model, examples, SFTTrainConfig(micro_batch_size=2), tok)
    packed, g_packed, mbs = _batch_loss_and_grads(
        model, examples, SFTTrainConfig(packing=True, micro_batch_size=8), tok
    )
    assert sum(mb.ids_NT.shape[0] for mb in mbs) < len(examples)  # several examples really share rows
    rows = mbs[0]
    assert int(rows.segments_NT.max()) > 1
    for segment in range(1, int(rows.segments_NT[0].max()) + 1):  # every packed example restarts at 0
        positions = rows.positions_NT[0][rows.segments_NT[0] == segment]
        assert positions.tolist() == list(range(len(positions)))
    assert abs(plain - packed) < 1e-5
    for name in g_plain:
        torch.testing.assert_close(g_packed[name], g_plain[name], atol=1e-5, rtol=1e-4)


def test_micro_batches_respect_the_token_limit():
    tok = _tokenizer()
    examples = [Example([5] * n, [False] + [True] * (n - 1)) for n in (10, 9, 8, 3, 2, 30)]
    cfg = SFTTrainConfig(micro_batch_size=8, micro_batch_tokens=20)
    mbs = micro_batches(examples, cfg, 64, tok.pad_token_id, torch.device("cpu"))
    assert [tuple(mb.ids_NT.shape) for mb in mbs] == [(1, 30), (2, 10), (2, 8), (1, 2)]


# ------------------------------------------------------------------------------------------- runs


def test_sft_memorises_a_small_dataset(tmp_path):
    data = _fruits(tmp_path)
    cfg = _cfg(
        data, f"--data.eval_path={data}", "--train.epochs=40", "--train.save_every=0", "--train.eval_every=20"
    )
    summary = run_sft(cfg, tmp_path / "run")
    assert summary["steps"] == 40 and summary["examples"] == 4
    assert summary["train_loss_last"] < 0.1 * summary["train_loss_first"]
    assert summary["eval_loss_after"] < 0.1 * summary["eval_loss_before"]
    assert [r["step"] for r in read_jsonl(tmp_path / "run" / "eval.jsonl")] == [0, 20, 40]
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model")
    tok = AutoTokenizer.from_pretrained(tmp_path / "run" / "model")
    prompt, response = FRUITS[2]
    text = tok.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True) == response


def test_run_directory_and_model_load_with_plain_transformers(tmp_path):
    run = tmp_path / "run"
    cfg = _cfg(
        _fruits(tmp_path),
        "--data.eval_fraction=0.25",
        "--train.batch_size=2",
        "--train.micro_batch_size=1",
        "--train.save_every=1",
        "--optim.schedule=cosine",
        "--optim.warmup_steps=1",
    )
    trainer = SFTTrainer(cfg, run)
    summary = trainer.train()
    assert json.loads((run / "summary.json").read_text()) == summary
    assert summary["examples"] == 3 and summary["eval_examples"] == 1 and summary["steps"] == 2
    assert sft_config_from_dict(tomllib.loads((run / "config.toml").read_text())) == cfg
    rows = read_jsonl(run / "metrics.jsonl")
    assert {"step", "loss", "lr", "tokens", "grad_norm", "time"} <= set(rows[0])
    assert [r["step"] for r in rows] == [1, 2] and rows[0]["lr"] == pytest.approx(1e-2)
    assert [p.name for p in checkpoint.checkpoints(run)] == ["step-1", "step-2"]
    loaded = AutoModelForCausalLM.from_pretrained(run / "model")
    AutoTokenizer.from_pretrained(run / "model")
    for name, p in trainer.model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], p)
    with pytest.raises(FileExistsError, match="already holds"):
        run_sft(cfg, run)
    from ponder.report import plot, summarize  # `ponder report` reads an SFT run too: loss curve

    text = summarize(run)
    assert text.startswith(f"{run}: 2 steps") and "loss      first 1 steps" in text
    assert "held-out (1 rows" in text
    assert plot(run) == run / "curves.png" and (run / "curves.png").stat().st_size > 0


def test_packed_bf16_autocast_run_trains(tmp_path):
    cfg = _cfg(
        _fruits(tmp_path),
        "--train.packing=true",
        "--train.micro_batch_tokens=48",
        "--train.epochs=2",
        "--train.save_every=0",
        "--model.autocast=bfloat16",
        "--data.format=raw",
    )
    summary = run_sft(cfg, tmp_path / "run")
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert summary["steps"] == 2 and all(r["grad_norm"] > 0 and r["skipped"] == 0 for r in rows)
    assert rows[1]["loss"] < rows[0]["loss"]


class _Interrupted(Exception):
    pass


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    data = _fruits(tmp_path)
    cfg = _cfg(
        data, "--train.epochs=3", "--train.batch_size=2", "--train.save_every=2", "--optim.schedule=cosine"
    )
    full = run_sft(cfg, tmp_path / "full")
    save = checkpoint.save

    def save_then_crash(run_dir, model, tokenizer, state, keep, reference=None):
        path = save(run_dir, model, tokenizer, state, keep, reference)
        if state.step == 4:
            raise _Interrupted
        return path

    monkeypatch.setattr(checkpoint, "save", save_then_crash)
    with pytest.raises(_Interrupted):
        run_sft(cfg, tmp_path / "cut")
    monkeypatch.setattr(checkpoint, "save", save)
    assert checkpoint.latest(tmp_path / "cut").name == "step-4"
    resumed = run_sft(cfg, tmp_path / "cut", resume=True)
    assert resumed["steps"] == full["steps"] == 6
    a, b = read_jsonl(tmp_path / "full" / "metrics.jsonl"), read_jsonl(tmp_path / "cut" / "metrics.jsonl")
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    assert [(r["loss"], r["lr"], r["tokens"]) for r in a] == [(r["loss"], r["lr"], r["tokens"]) for r in b]
    wa = AutoModelForCausalLM.from_pretrained(tmp_path / "full" / "model").state_dict()
    wb = AutoModelForCausalLM.from_pretrained(tmp_path / "cut" / "model").state_dict()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


# ------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["--data.format=markdown"], "data.format"),
        (["--data.max_len=0"], "data.max_len"),
        (["--data.eval_fraction=1.0"], "data.eval_fraction"),
        (["--data.eval_fraction=0.1", "--data.eval_path=x.jsonl"], "data.eval_path"),
        (["--data.prompt_field="], "data.prompt_field"),
        (["--train.epochs=0"], "train.epochs"),
        (["--train.batch_size=0"], "train.batch_size"),
        (["--train.micro_batch_size=0"], "train.micro_batch_size"),
        (["--train.batch_tokens=-5"], "train.batch_tokens"),
        (["--train.epoch=2"], "did you mean 'epochs'"),
        (["--model.autocast=fp8"], "model.autocast"),
        (["--optim.schedule=linear"], "optim.schedule"),
    ],
)
def test_config_errors_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key):
        load_sft_config(None, ["--data.path=d.jsonl", *overrides])


def test_missing_data_path_and_template_errors(tmp_path):
    with pytest.raises(ConfigError, match="data.path"):
        run_sft(load_sft_config(None, ["--model.name=tiny"]), tmp_path / "run")
    path = _fruits(tmp_path)
    tok = _tokenizer()
    tok.chat_template = None
    with pytest.raises(ConfigError, match="data.format = 'raw'"):
        load_examples(path, SFTDataConfig(path=str(path)), tok)


def test_extra_paths_are_appended_to_the_training_rows(tmp_path):
    first = _fruits(tmp_path)
    second = _jsonl(tmp_path / "more.jsonl", [{"prompt": "colour of grass?", "response": "green"}] * 2)
    cfg = _cfg(first, f"--data.extra_paths=[{json.dumps(str(second))}]", "--train.epochs=1")
    trainer = SFTTrainer(cfg, tmp_path / "run")
    alone = SFTTrainer(_cfg(first, "--train.epochs=1"), tmp_path / "alone")
    assert len(trainer.train_set.examples) == len(alone.train_set.examples) + 2
    with pytest.raises(DatasetError, match="nope.jsonl"):
        SFTTrainer(
            _cfg(first, f"--data.extra_paths=[{json.dumps(str(tmp_path / 'nope.jsonl'))}]"), tmp_path / "x"
        )
