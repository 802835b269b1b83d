"""The HTTP teacher (`ponder.rollout.openai_api`) against a stub OpenAI-compatible server on loopback:
n samples in one request, reasoning_content put back in think tags, truncation, retries, clear 4xx errors,
then the rejection and eval stages sampling a teacher instead of a local model.

python -m pytest -q tests/test_openai_teacher.py
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ponder.config import ConfigError, SamplingConfig
from ponder.rewards.rules import format_reward
from ponder.rollout.openai_api import APIError, ChatGenerator, OpenAIGenerator, TeacherConfig, assemble

USER = [{"role": "user", "content": "What is 2 + 3?"}]
SAMPLING = SamplingConfig(temperature=0.7, top_p=0.9, max_new_tokens=64)
Reply = Callable[[dict, int], tuple[int, dict]]  # (request body, request number) -> (status, JSON reply)


class Stub:
    """A loopback OpenAI-compatible server whose chat replies come from `reply`; records every request."""

    def __init__(self, reply: Reply) -> None:
        self.reply, self.requests, self.lock = reply, [], threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self._answer(200, {"object": "list", "data": [{"id": "stub-teacher", "object": "model"}]})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.requests.append(
                        {"path": self.path, "body": body, "auth": self.headers["Authorization"]}
                    )
                    number = len(stub.requests)
                self._answer(*stub.reply(body, number))

            def _answer(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def stub() -> Iterator[Callable[[Reply], Stub]]:
    servers: list[Stub] = []

    def start(reply: Reply) -> Stub:
        servers.append(Stub(reply))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def _choices(messages: list[dict], finish: str = "stop") -> list[dict]:
    return [
        {"index": i, "message": {"role": "assistant", **m}, "finish_reason": finish}
        for i, m in enumerate(messages)
    ]


def _ok(choices: list[dict]) -> tuple[int, dict]:
    usage = {"prompt_tokens": 10, "completion_tokens": 5 * len(choices)}
    return 200, {"object": "chat.completion", "choices": choices, "usage": usage}


def _adder(body: dict, number: int) -> tuple[int, dict]:
    """A teacher that answers "What is a + b?" right, its reasoning apart (as DeepSeek's API does)."""
    a, b = map(int, re.search(r"(\d+) \+ (\d+)", body["messages"][-1]["content"]).groups())
    message = {"reasoning_content": f"{a} plus {b} is {a + b}.", "content": str(a + b)}
    return _ok(_choices([message] * body["n"]))


def test_copies_of_a_prompt_are_one_request_with_n(stub):
    server = stub(lambda body, k: _ok(_choices([{"content": f"r{k}.{i}"} for i in range(body["n"])])))
    teacher = OpenAIGenerator(server.url, "m", concurrency=1)
    other = [{"role": "system", "content": "Be brief."}, *USER]
    outs = teacher.generate_chat([USER] * 3 + [other] * 2, SAMPLING, seed=7)
    assert [o.text for o in outs] == ["r1.0", "r1.1", "r1.2", "r2.0", "r2.1"]
    assert all(o.finished and o.token_ids == [] for o in outs)
    first, second = (r["body"] for r in server.requests)
    assert (first["n"], second["n"]) == (3, 2) and (first["seed"], second["seed"]) == (7, 8)
    assert first["messages"] == USER and second["messages"] == other
    assert (first["model"], first["temperature"], first["top_p"], first["max_tokens"]) == ("m", 0.7, 0.9, 64)
    assert "top_k" not in first  # not an OpenAI parameter: sent only when set
    assert teacher.usage == {"requests": 2, "retries": 0, "prompt_tokens": 20, "completion_tokens": 25}
    assert isinstance(teacher, ChatGenerator)


def test_a_server_returning_fewer_choices_is_asked_for_the_rest(stub):
    server = stub(lambda body, k: _ok(_choices([{"content": f"r{k}"}])))  # ignores n
    outs = OpenAIGenerator(server.url, "m").generate_chat([USER] * 3, SAMPLING, seed=0)
    assert [o.text for o in outs] == ["r1", "r2", "r3"]
    assert [r["body"]["n"] for r in server.requests] == [3, 2, 1]
    assert len({r["body"]["seed"] for r in server.requests}) == 3  # a new seed each time: new samples


def test_reasoning_content_is_put_back_in_think_tags():
    assert assemble({"reasoning_content": " 2 and 3 make 5. ", "content": "5"}) == (
        "<think>\n2 and 3 make 5.\n</think>\n<answer>5</answer>"
    )
    assert format_reward(assemble({"reasoning_content": "2 and 3.", "content": "5"}), None) == 1.0
    assert (
        assemble({"reasoning": "r", "content": "<answer>5</answer>"})
        == "<think>\nr\n</think>\n<answer>5</answer>"
    )
    assert (
        assemble({"reasoning_content": "r", "content": "5"}, answer_tags=False) == "<think>\nr\n</think>\n5"
    )
    assert assemble({"content": "<think>r</think>5", "reasoning_content": None}) == "<think>r</think>5"
    assert assemble({"content": None}) == ""


def test_reasoning_models_and_truncation_over_http(stub):
    def reply(body: dict, number: int) -> tuple[int, dict]:
        done = _choices([{"reasoning_content": "2 + 3 = 5", "content": "5"}])
        cut = _choices([{"reasoning_content": "2 + 3 is", "content": ""}], finish="length")
        cut[0]["index"] = 1
        return _ok([cut[0], done[0]])  # out of order: the index field orders them

    server = stub(reply)
    done, cut = OpenAIGenerator(server.url, "m").generate_chat([USER] * 2, SAMPLING, seed=0)
    assert done.text == "<think>\n2 + 3 = 5\n</think>\n<answer>5</answer>" and done.finished
    assert not cut.finished


def test_retries_a_503_then_succeeds(stub):
    def reply(body: dict, number: int) -> tuple[int, dict]:
        if number == 1:
            return 503, {"error": {"message": "loading"}}
        return _ok(_choices([{"content": "fine"}]))

    server = stub(reply)
    teacher = OpenAIGenerator(server.url, "m", backoff=0.01)
    (out,) = teacher.generate_chat([USER], SAMPLING, seed=0)
    assert out.text == "fine" and len(server.requests) == 2
    assert teacher.usage["retries"] == 1 and teacher.usage["requests"] == 2


def test_a_400_fails_at_once_naming_the_url_status_and_body(stub):
    server = stub(lambda body, k: (400, {"error": {"message": "max_tokens is too large: 64000"}}))
    with pytest.raises(APIError) as err:
        OpenAIGenerator(server.url, "m", backoff=0.01).generate_chat([USER], SAMPLING, seed=0)
    message = str(err.value)
    assert f"{server.url}/chat/completions" in message and "HTTP 400" in message
    assert "max_tokens is too large" in message
    assert len(server.requests) == 1  # a client error is not retried


def test_gives_up_on_a_dead_server_naming_it(stub):
    server = stub(_adder)
    url = server.url
    server.close()
    with pytest.raises(APIError, match=re.escape(url) + ".*2 attempts.*last error"):
        OpenAIGenerator(url, "m", retries=1, backoff=0.01).generate_chat([USER], SAMPLING, seed=0)


def test_config_reads_the_key_from_the_environment_and_finds_the_model(stub, monkeypatch):
    server = stub(_adder)
    monkeypatch.setenv("STUB_KEY", "sekrit")
    teacher = TeacherConfig(url=server.url, api_key_env="STUB_KEY").build()
    assert teacher.model == "stub-teacher"  # no name given: the first of GET /models
    teacher.generate_chat([USER], SAMPLING, seed=0)
    assert server.requests[0]["auth"] == "Bearer sekrit"
    monkeypatch.delenv("STUB_KEY")
    TeacherConfig(url=server.url, model="m", api_key_env="STUB_KEY").build().generate_chat(
        [USER], SAMPLING, 0
    )
    assert server.requests[1]["auth"] is None  # the key is optional: local servers need none
    assert OpenAIGenerator(server.url.removesuffix("/v1"), "m").url == server.url  # a bare host gets /v1
    with pytest.raises(ConfigError, match="teacher.url"):
        TeacherConfig(url="127.0.0.1:8000")
    with pytest.raises(ConfigError, match="teacher.concurrency"):
        TeacherConfig(url=server.url, concurrency=0)


# ------------------------------------------------------------------------------------ the stages


def _questions(tmp_path: Path) -> Path:
    path = tmp_path / "questions.jsonl"
    rows = [{"question": f"What is {a} + {a + 1}?", "answer": str(2 * a + 1)} for a in range(1, 5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rejection_samples_a_teacher_over_http(stub, tmp_path):
    from ponder.stages.rejection import load_rejection_config, run_rejection

    server = stub(_adder)
    args = [
        f"--teacher.url={server.url}",
        "--teacher.model=adder",
        "--task.name=file",
        f'--task.args={{path = "{_questions(tmp_path)}", shuffle = false}}',
        "--rejection.prompts=0",
        "--rejection.samples_per_prompt=2",
        "--rejection.progress=false",
        "--output.template=<think>\n{reasoning}\n</think>\n<answer>{answer}</answer>",
    ]
    stats = run_rejection(load_rejection_config(None, args), tmp_path / "run")
    # 4 prompts, 2 samples each in one request; the duplicate of each prompt's first sample is dropped
    assert [r["body"]["n"] for r in server.requests] == [2, 2, 2, 2]
    assert stats["generated"] == 8 and stats["kept"] == 4 and stats["removed"]["duplicate"] == 4
    assert stats["teacher"]["requests"] == 4 and stats["model"] == f"adder@{server.url}"
    rows = [json.loads(line) for line in (tmp_path / "run" / "data.jsonl").read_text().splitlines()]
    assert {r["model"] for r in rows} == {f"adder@{server.url}"}
    row = next(r for r in rows if r["reference"] == "3")
    assert row["messages"][-1]["content"] == "<think>\n1 plus 2 is 3.\n</think>\n<answer>3</answer>"
    system = server.requests[0]["body"]["messages"][0]
    assert system["role"] == "system" and "<think>" in system["content"]  # R1's system prompt asks the format
    with pytest.raises(ConfigError, match="both set"):
        load_rejection_config(None, [*args, "--model.name=tiny"])


def test_eval_stage_measures_a_teacher_over_http(stub, tmp_path):
    from ponder.pipeline import run_pipeline

    server = stub(_adder)
    stage = {
        "kind": "eval",
        "teacher": {"url": server.url, "model": "adder"},
        "task": {"name": "file", "args": {"path": str(_questions(tmp_path)), "shuffle": False}},
        "samples": 3,
    }
    (row,) = run_pipeline({"pipeline": {"stages": ["ev"]}, "stages": {"ev": stage}}, tmp_path / "run")
    s = row["summary"]
    assert s["items"] == 4 and s["samples"] == 3 and s["accuracy"] == 1.0 and s["format"] == 1.0
    assert s["model"] == f"adder@{server.url}" and len(server.requests) == 4
    with pytest.raises(ConfigError, match="both set"):
        run_pipeline(
            {"pipeline": {"stages": ["ev"]}, "stages": {"ev": {**stage, "model": {"name": "tiny"}}}},
            tmp_path / "x",
        )
