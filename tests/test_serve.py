"""`ponder serve` driven by the official `openai` client on loopback, and the streaming text pipeline.

python -m pytest -q tests/test_serve.py
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

from ponder.config import RolloutConfig, SamplingConfig
from ponder.model import load_model
from ponder.rollout.base import Completion
from ponder.rollout.engine import Engine
from ponder.rollout.factory import make_generator
from ponder.rollout.stream import (
    IncrementalDecoder,
    ReasoningSplitter,
    StopTrimmer,
    TextStream,
    opens_think,
    split_reasoning,
    trim_stop,
)
from ponder.serve import Server
from ponder.serve_api import API, Worker

USER = [{"role": "user", "content": "What is 2 + 3?"}]
CONTEXT = 256


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


def _serve(tok, generator, prefill: str = "", max_batch: int = 8) -> Server:
    api = API(tok, Worker(generator, max_batch), "tiny", CONTEXT, prefill)
    return Server(api, "127.0.0.1", 0, verbose=False).start()


@pytest.fixture(scope="module")
def server(tiny):
    model, tok = tiny
    srv = _serve(tok, make_generator(model, tok, RolloutConfig(max_batch=8), None, 8, CONTEXT))
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=120)


def _reasoning(message) -> str | None:
    return (message.model_extra or {}).get("reasoning_content")


def _collect(chunks) -> dict[int, dict]:
    """Per choice index: the concatenated text / reasoning / content, finish reason, chunk count."""
    out: dict[int, dict] = {}
    for chunk in chunks:
        for c in chunk.choices:
            row = out.setdefault(c.index, {"text": "", "reasoning": "", "content": "", "chunks": 0})
            row["chunks"] += 1
            if hasattr(c, "delta"):
                row["reasoning"] += _reasoning(c.delta) or ""
                row["content"] += c.delta.content or ""
            else:
                row["text"] += c.text
            if c.finish_reason:
                row["finish"] = c.finish_reason
    return out


def test_models_list(client):
    models = client.models.list().data
    assert [m.id for m in models] == ["tiny"] and models[0].owned_by == "ponder"


def test_chat_completion(client, tiny):
    _, tok = tiny
    resp = client.chat.completions.create(model="tiny", messages=USER, max_tokens=8, seed=1)
    assert resp.object == "chat.completion" and resp.model == "tiny" and resp.id.startswith("chatcmpl-")
    (choice,) = resp.choices
    assert choice.index == 0 and choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and _reasoning(choice.message) is None
    prompt = tok.apply_chat_template(USER, tokenize=False, add_generation_prompt=True)
    assert resp.usage.prompt_tokens == len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert 1 <= resp.usage.completion_tokens <= 8
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert choice.finish_reason == ("length" if resp.usage.completion_tokens == 8 else "stop")


def test_completions_follow_the_engine_and_the_seed(client, tiny):
    model, tok = tiny
    resp = client.completions.create(model="tiny", prompt=["2+2=", "hello"], n=2, max_tokens=12, seed=5)
    assert resp.object == "text_completion" and [c.index for c in resp.choices] == [0, 1, 2, 3]
    # the server runs the seed as given: the engine alone, same seed, gives the same samples
    ids = [tok("2+2=")["input_ids"]] * 2 + [tok("hello")["input_ids"]] * 2
    ref = Engine(model, tok, num_blocks=64).generate(ids, SamplingConfig(max_new_tokens=12), seed=5)
    assert [c.text for c in resp.choices] == [o.text for o in ref]
    assert len({c.text for c in resp.choices}) == 4  # n samples differ
    assert resp.usage.completion_tokens == sum(len(o.token_ids) for o in ref)
    again = client.completions.create(model="tiny", prompt=["2+2=", "hello"], n=2, max_tokens=12, seed=5)
    other = client.completions.create(model="tiny", prompt=["2+2=", "hello"], n=2, max_tokens=12, seed=6)
    assert [c.text for c in again.choices] == [c.text for c in resp.choices]
    assert [c.text for c in other.choices] != [c.text for c in resp.choices]


def test_n_choices_and_chat_seed(client):
    kw = dict(model="tiny", messages=USER, max_tokens=10, n=3, temperature=1.0, top_p=0.9)
    resp = client.chat.completions.create(seed=11, **kw)
    assert [c.index for c in resp.choices] == [0, 1, 2]
    assert len({c.message.content for c in resp.choices}) == 3
    again = client.chat.completions.create(seed=11, **kw)
    assert [c.message.content for c in again.choices] == [c.message.content for c in resp.choices]


def test_streaming_concatenates_to_the_non_streamed_text(client):
    kw = dict(model="tiny", prompt="abc", max_tokens=40, n=2, seed=3)
    whole = client.completions.create(**kw)
    got = _collect(client.completions.create(stream=True, **kw))
    for c in whole.choices:
        assert got[c.index]["text"] == c.text and got[c.index]["finish"] == c.finish_reason
        assert got[c.index]["chunks"] > 5  # token by token, not one final chunk
    kw = dict(model="tiny", messages=USER, max_tokens=40, n=2, seed=4)
    whole = client.chat.completions.create(**kw)
    stream = client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw)
    chunks = list(stream)
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    got = _collect(chunks)
    for c in whole.choices:
        assert got[c.index]["content"] == c.message.content and got[c.index]["finish"] == c.finish_reason


def _cut_point(text: str) -> str:
    """A two-character stop string from the middle of `text` (printable, so decoding cannot shift it)."""
    for i in range(3, len(text) - 2):
        if text[i : i + 2].isascii() and text[i : i + 2].isprintable() and not text[i : i + 2].isspace():
            return text[i : i + 2]
    raise AssertionError(f"no printable pair in {text!r}")


def test_stop_strings_cut_before_the_stop(client):
    kw = dict(model="tiny", prompt="abc", max_tokens=40, seed=8)
    free = client.completions.create(**kw).choices[0]
    stop = _cut_point(free.text)
    want = free.text[: free.text.find(stop)]
    for stops in (stop, [stop, "\x00never"]):
        cut = client.completions.create(stop=stops, **kw).choices[0]
        assert cut.text == want and cut.finish_reason == "stop"
        streamed = _collect(client.completions.create(stop=stops, stream=True, **kw))[0]
        assert streamed["text"] == want and streamed["finish"] == "stop"


def _raw(url: str, method: str = "POST", body: bytes | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.parametrize(
    "change,param",
    [
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "user"}]}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages"),
        ({"n": 0}, "n"),
        ({"n": "2"}, "n"),
        ({"temperature": -0.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": CONTEXT}, "max_tokens"),  # does not fit after the prompt
        ({"stop": 3}, "stop"),
        ({"model": "gpt-4o"}, "model"),
        ({"messages": [{"role": "user", "content": "x" * CONTEXT}]}, "messages"),  # longer than the context
    ],
)
def test_bad_chat_requests_are_400_naming_the_field(server, change, param):
    body = {"model": "tiny", "messages": USER, "max_tokens": 4, **change}
    status, err = _raw(server.url + "/chat/completions", body=json.dumps(body).encode())
    assert status == 400 and err["error"]["type"] == "invalid_request_error"
    assert err["error"]["param"] == param and param in err["error"]["message"]
    assert set(err["error"]) == {"message", "type", "param", "code"}


def test_bad_requests_other_statuses(server, client):
    assert _raw(server.url + "/chat/completions", body=b"{not json")[0] == 400
    status, err = _raw(server.url + "/completions", body=b'{"model": "tiny", "prompt": []}')
    assert status == 400 and err["error"]["param"] == "prompt"
    status, err = _raw(server.url + "/nope", method="GET")
    assert status == 404 and "/v1/nope" in err["error"]["message"]
    # a refused request's body is consumed: the next request on the same keep-alive connection is served
    conn = http.client.HTTPConnection(*server.httpd.server_address[:2], timeout=60)
    conn.request("POST", "/v1/nope", body=b'{"model": "tiny"}')
    assert conn.getresponse().read() and conn.sock is not None
    conn.request("GET", "/v1/models")
    assert json.loads(conn.getresponse().read())["data"][0]["id"] == "tiny"
    conn.close()
    assert _raw(server.url + "/chat/completions", method="GET")[0] == 405
    assert _raw(server.url + "/models", method="POST", body=b"{}")[0] == 405
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=USER, n=0)
    assert info.value.status_code == 400 and info.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError, match="prompt"):
        client.completions.create(model="tiny", prompt="y" * (CONTEXT + 1))
    assert client.models.list().data  # still serving


class Scripted:
    """A generator that always writes `text` (then the end-of-sequence token), reporting each token."""

    def __init__(self, tok, text: str) -> None:
        self.ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        self.tok = tok

    def generate(self, prompt_ids, sampling, seed, max_new_tokens=None, on_token=None) -> list[Completion]:
        outs = []
        for i, p in enumerate(prompt_ids):
            ids = self.ids[: (max_new_tokens or [sampling.max_new_tokens] * len(prompt_ids))[i]]
            for t in ids:
                if on_token:
                    on_token(i, t)
            text = self.tok.decode(ids, skip_special_tokens=True)
            outs.append(Completion(p, ids, text, finished=ids[-1] == self.tok.eos_token_id))
        return outs


@pytest.mark.parametrize(
    "prefill,script",
    [
        ("", "<think>\nFirst 2, then 3 more: 5 ünits.\n</think>\n<answer>\n5\n</answer>"),
        ("<think>\n", "First 2, then 3 more: 5 ünits.\n</think>\n<answer>5</answer>"),  # the prompt opened it
    ],
)
def test_reasoning_content_is_split_from_the_answer(tiny, prefill, script):
    _, tok = tiny
    srv = _serve(tok, Scripted(tok, script), prefill)
    try:
        client = openai.OpenAI(base_url=srv.url, api_key="unused", max_retries=0)
        msg = client.chat.completions.create(model="tiny", messages=USER).choices[0].message
        assert _reasoning(msg) == "First 2, then 3 more: 5 ünits." and msg.content == "5"
        order = []
        for chunk in client.chat.completions.create(model="tiny", messages=USER, stream=True):
            delta = chunk.choices[0].delta
            order += ["r"] * bool(_reasoning(delta)) + ["c"] * bool(delta.content)
        got = _collect(client.chat.completions.create(model="tiny", messages=USER, stream=True))[0]
        assert (got["reasoning"], got["content"]) == (_reasoning(msg), "5")
        assert order.count("r") > 5 and order == sorted(order, key="rc".index)  # reasoning first, streamed
        completion = client.completions.create(model="tiny", prompt="q", max_tokens=200).choices[0]
        assert completion.text == script  # completions are raw text
    finally:
        srv.close()


class Gated:
    """Holds its first call until released; records the number of prompts of every call."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, []
        self.entered, self.release = threading.Event(), threading.Event()

    def generate(self, prompt_ids, sampling, seed, max_new_tokens=None, on_token=None):
        self.calls.append(len(prompt_ids))
        self.entered.set()
        self.release.wait(60)
        return self.inner.generate(
            prompt_ids, sampling, seed, max_new_tokens=max_new_tokens, on_token=on_token
        )


def test_waiting_requests_share_one_engine_call(tiny):
    model, tok = tiny
    gated = Gated(Engine(model, tok, num_blocks=128))
    srv = _serve(tok, gated)
    client = openai.OpenAI(base_url=srv.url, api_key="unused", max_retries=0, timeout=120)
    results: dict[str, str] = {}

    def ask(name: str, prompt: str, **kw) -> None:
        resp = client.completions.create(model="tiny", prompt=prompt, max_tokens=6, **kw)
        results[name] = resp.choices[0].text

    try:
        first = threading.Thread(target=ask, args=("first", "abc"))
        first.start()
        assert gated.entered.wait(60)
        later = [
            threading.Thread(target=ask, args=("x", "xyz"), kwargs={"seed": 7}),
            threading.Thread(target=ask, args=("y", "yz"), kwargs={"seed": 7}),
            threading.Thread(target=ask, args=("y again", "yz"), kwargs={"seed": 7}),  # same prompt and seed
            threading.Thread(target=ask, args=("hot", "xyz"), kwargs={"seed": 7, "temperature": 0.5}),
        ]
        for t in later:
            t.start()
            deadline = time.time() + 60
            while srv.api.worker.queue.qsize() < later.index(t) + 1 and time.time() < deadline:
                time.sleep(0.01)
        gated.release.set()
        for t in [first, *later]:
            t.join(60)
        # x and y together; "y again" would collide with y (same seed, same prompt); "hot" samples otherwise
        assert gated.calls == [1, 2, 1, 1] and len(results) == 5
        assert results["y"] == results["y again"]
        alone = client.completions.create(model="tiny", prompt="xyz", max_tokens=6, seed=7).choices[0].text
        assert alone == results["x"]  # batching does not change what a seed gives
    finally:
        gated.release.set()
        srv.close()


def test_cli_serve_subprocess():
    root = Path(__file__).resolve().parent.parent
    # -X faulthandler: should the server hang, SIGABRT makes it print every thread's stack (shown below)
    cmd = [sys.executable, "-X", "faulthandler", "-m", "ponder.cli", "serve", "tiny:micro", "--port", "0"]
    proc = subprocess.Popen(
        [*cmd, "--quiet"], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output: list[str] = []
    try:
        line = ""
        while "http://" not in line:
            line = proc.stdout.readline()
            assert line, "the server exited before printing its URL"
        # keep reading, so a chatty server can never block on a full pipe
        drain = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
        drain.start()
        url = re.search(r"http://\S+/v1", line).group(0)
        with urllib.request.urlopen(url + "/models", timeout=30) as r:
            assert json.loads(r.read())["data"][0]["id"] == "tiny:micro"
        # `kill PID` stops the server; Ctrl-C (SIGINT) may be ignored when a shell started the tests in the
        # background, so that is what the server handles itself
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=60) == 0
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            proc.wait(timeout=10)
            drain.join(timeout=5)
            pytest.fail("ponder serve still ran 60 s after SIGTERM; its output:\n" + "".join(output)[-6000:])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------ the text pipeline, without a server


@pytest.mark.parametrize(
    "text,in_think,reasoning,content",
    [
        ("<think>\nadd them\n</think>\n<answer>\n42\n</answer>", False, "add them", "42"),
        ("add them</think><answer>42</answer>", True, "add them", "42"),
        ("<think>\nadd them</think>42", True, "add them", "42"),  # a model repeating the prefill
        ("still thinking, cut off", True, "still thinking, cut off", ""),
        ("Plain answer: <answer>7</answer>.", False, None, "Plain answer: 7."),
        ("no tags at all", False, None, "no tags at all"),
        ("a < b and c <thinking", False, None, "a < b and c <thinking"),  # not tags
        ("<think>x</think>one</think>two", False, "x", "onetwo"),  # a stray closing tag is dropped
    ],
)
def test_split_reasoning(text, in_think, reasoning, content):
    assert split_reasoning(text, in_think) == (reasoning, content)
    # streamed in pieces cut anywhere (tags split across deltas), it gives the same
    for size in (1, 2, 3, 7):
        splitter = ReasoningSplitter(in_think)
        got = [splitter.push(text[i : i + size]) for i in range(0, len(text), size)] + [splitter.finish()]
        assert "".join(d.reasoning for d in got) == (reasoning or "")
        assert "".join(d.content for d in got) == content
        seen = [c for d in got for c in ("r" * bool(d.reasoning) + "c" * bool(d.content))]
        assert seen == sorted(seen, key="rc".index) or reasoning is None


def test_opens_think():
    assert opens_think("<|im_start|>assistant\n<think>\n")
    assert not opens_think("<|im_start|>assistant\n<think>old</think>\n")
    assert not opens_think("<|im_start|>assistant\n")


def test_stop_trimmer_holds_only_a_possible_stop():
    assert trim_stop("one. two. three", [". t", "xx"]) == ("one", True)
    trimmer = StopTrimmer(["END", "\n\n"])
    assert trimmer.push("abc E") == "abc "  # "E" may start "END"
    assert trimmer.push("Nx") == "ENx"  # it did not
    assert trimmer.push("y\n") == "y"
    assert trimmer.push("\nignored") == "" and trimmer.stopped
    assert trimmer.push("more") == "" and trimmer.finish() == ""


def test_incremental_decoding_never_splits_a_character(tiny):
    _, tok = tiny  # one token per byte: "é" is two tokens, "🙂" four
    text = "héllo wörld 🙂 done"
    decoder = IncrementalDecoder(tok)
    pieces = [decoder.push(t) for t in tok(text)["input_ids"]] + [decoder.finish()]
    assert "".join(pieces) == text and not any("\ufffd" in p for p in pieces)
    assert pieces.count("") >= 1 + 1 + 3  # the held continuation bytes
    stream = TextStream(tok, ["wör"])
    deltas = [stream.push(t) for t in tok(text)["input_ids"]] + [stream.finish()]
    assert "".join(d.content for d in deltas) == "héllo "
