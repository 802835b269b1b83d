"""A teacher over HTTP: completions from any OpenAI-compatible server (vLLM, SGLang, `ponder serve`, the
OpenAI or DeepSeek APIs), for distillation and evaluation with a model that ponder does not load itself.

    from ponder.rollout.openai_api import OpenAIGenerator
    teacher = OpenAIGenerator("http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-7B-Instruct", concurrency=16)
    outs = teacher.generate_chat([[{"role": "user", "content": "What is 2 + 3?"}]] * 4, sampling, seed=0)

Why chat messages and not token ids (the `Generator` interface of the local backends): the teacher has its
own tokenizer and chat template, which only the server knows, so it is sent `/v1/chat/completions` requests
with the conversation and renders the prompt itself. `ChatGenerator` is that interface; the stages that
accept a teacher (rejection, eval) build the conversation with `ponder.data.templates.chat_messages`.
A chat API cannot prefill the assistant turn, so `prompt.prefill` does not apply: the response is what the
teacher wrote, and the system prompt (R1's, by default) asks for `<think>…</think><answer>…</answer>`.

Details:
- Consecutive copies of one conversation are one request with `n` = the number of copies (the server then
  computes the prompt once); a server that returns fewer choices is asked again for the rest.
- Each request carries a `seed` (the call's seed + the conversation's position), so a server that honours
  seeds (vLLM does) returns the same samples again.
- Sampling: temperature, top_p, max_tokens (= `max_new_tokens`) and stop strings are standard; top_k and
  min_tokens are sent only when set (vLLM and SGLang accept them, the OpenAI API does not).
- A reasoning model's `reasoning_content` (DeepSeek's name; `reasoning` in newer vLLM) is put back in front
  as `<think>\\n{reasoning}\\n</think>\\n{content}`; with `answer_tags` (the default, the R1 format that
  ponder's filters and rewards read) a content without an `<answer>` block is wrapped in one.
- `finish_reason == "length"` gives `Completion.finished = False` (truncated).
- Chat APIs return text, not token ids: `Completion.token_ids` is empty; the generator's `usage` counts the
  tokens the server reports (prompt, completion) and the requests made.
- Requests run concurrently in a thread pool (`concurrency`); 429, 5xx, connection errors and timeouts are
  retried with exponential backoff (or the server's Retry-After), other 4xx fail at once with the URL, the
  status and the body. The API key is read from the environment variable `api_key_env` (optional: local
  servers need none). Standard library only (urllib).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ponder.config import ConfigError, ModelConfig, SamplingConfig, check_positive
from ponder.rollout.base import Completion

Messages = list[dict[str, str]]


class APIError(RuntimeError):
    """A request to the teacher's server failed (the message names the URL and the status or error)."""


@runtime_checkable
class ChatGenerator(Protocol):
    """Samples completions of chat conversations; like `Generator`, a prompt arrives repeated n times for
    n samples, and the result has one completion per conversation, in order."""

    def generate_chat(
        self, conversations: list[Messages], sampling: SamplingConfig, seed: int
    ) -> list[Completion]: ...


@dataclass(frozen=True)
class TeacherConfig:
    """`teacher = { url = "http://127.0.0.1:8000/v1", model = "NAME" }`: an OpenAI-compatible server in
    place of a local `model` (an empty `url`: no teacher). `model` is the name the server knows (empty:
    the first of its `/models`); the API key is read from the environment variable `api_key_env`;
    `concurrency` requests at once, each retried up to `retries` times, waiting at most `timeout` seconds
    for an answer; `answer_tags` wraps a reasoning model's bare answer in `<answer>…</answer>`."""

    url: str = ""
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    retries: int = 5
    timeout: float = 600.0
    answer_tags: bool = True

    def __post_init__(self) -> None:
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"teacher.url = {self.url!r} is not allowed; it must start with http(s)://")
        check_positive("teacher.concurrency", self.concurrency)
        check_positive("teacher.retries", self.retries, allow_zero=True)
        check_positive("teacher.timeout", self.timeout)

    def check_alone(self, model: ModelConfig) -> None:
        """A stage samples `model` (a local checkpoint) or this teacher, not both. A model table equal to
        the defaults counts as unset: a config cannot tell it from an absent one."""
        if self.url and model != ModelConfig():
            raise ConfigError(
                f"model (name = {model.name!r}) and teacher (url = {self.url!r}) are both set; sample "
                "either a local model or a teacher over HTTP: remove one of them"
            )

    def source(self, model: ModelConfig) -> str:
        """What the samples come from, for provenance: the teacher's `model@url`, else the model's name."""
        if not self.url:
            return model.name
        return f"{self.model}@{self.url}" if self.model else self.url

    def build(self) -> OpenAIGenerator:
        """The generator for this teacher."""
        return OpenAIGenerator(
            self.url,
            self.model,
            api_key=os.environ.get(self.api_key_env) or None,
            concurrency=self.concurrency,
            retries=self.retries,
            timeout=self.timeout,
            answer_tags=self.answer_tags,
        )


def assemble(message: dict[str, Any], answer_tags: bool = True) -> str:
    """The response text of one chat message: content, with the reasoning (when the server returns it
    apart) put back in front in think tags, and a bare answer wrapped in answer tags if `answer_tags`."""
    content = message.get("content") or ""
    reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
    if not reasoning.strip():
        return content
    if answer_tags and "<answer>" not in content:
        content = f"<answer>{content.strip()}</answer>"
    return f"<think>\n{reasoning.strip()}\n</think>\n{content}"


class OpenAIGenerator:
    """A `ChatGenerator` over an OpenAI-compatible `/v1/chat/completions` endpoint (see the module doc)."""

    def __init__(
        self,
        url: str,
        model: str = "",
        api_key: str | None = None,
        concurrency: int = 8,
        retries: int = 5,
        timeout: float = 600.0,
        backoff: float = 1.0,
        answer_tags: bool = True,
    ) -> None:
        url = url.rstrip("/")
        if url.count("/") == 2:  # a bare http://host:port: the API lives under /v1
            url += "/v1"
        self.url, self.api_key = url, api_key
        self.concurrency, self.retries, self.timeout, self.backoff = concurrency, retries, timeout, backoff
        self.answer_tags = answer_tags
        self.usage = {"requests": 0, "retries": 0, "prompt_tokens": 0, "completion_tokens": 0}
        self._lock = threading.Lock()
        self.model = model or self._first_model()

    # ------------------------------------------------------------------------------------------ public

    def generate_chat(
        self, conversations: list[Messages], sampling: SamplingConfig, seed: int
    ) -> list[Completion]:
        """One completion per conversation, in order; consecutive equal conversations share a request."""
        groups: list[tuple[Messages, int]] = []
        for conv in conversations:
            if groups and groups[-1][0] == conv:
                groups[-1] = (conv, groups[-1][1] + 1)
            else:
                groups.append((conv, 1))
        jobs = [(conv, n, seed + g) for g, (conv, n) in enumerate(groups)]
        workers = min(self.concurrency, max(1, len(jobs)))
        with ThreadPoolExecutor(workers, thread_name_prefix="teacher") as pool:
            results = list(pool.map(lambda job: self._samples(*job, sampling), jobs))
        return [c for group in results for c in group]

    # ------------------------------------------------------------------------------------------ requests

    def _samples(self, messages: Messages, n: int, seed: int, sampling: SamplingConfig) -> list[Completion]:
        """`n` samples of one conversation: one request with `n`, more if the server returned fewer."""
        out: list[Completion] = []
        attempt = 0
        while len(out) < n:
            body = self._body(messages, n - len(out), seed + attempt * 1_000_003, sampling)
            reply = self._post("/chat/completions", body)
            choices = sorted(reply.get("choices") or [], key=lambda c: c.get("index", 0))
            if not choices:
                raise APIError(f"POST {self.url}/chat/completions: the reply has no choices: {_cut(reply)}")
            for choice in choices[: n - len(out)]:
                text = assemble(choice.get("message") or {}, self.answer_tags)
                out.append(Completion([], [], text, finished=choice.get("finish_reason") != "length"))
            usage = reply.get("usage") or {}
            with self._lock:
                for key in ("prompt_tokens", "completion_tokens"):
                    self.usage[key] += int(usage.get(key) or 0)
            attempt += 1
        return out

    def _body(self, messages: Messages, n: int, seed: int, s: SamplingConfig) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "n": n,
            "seed": seed,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_new_tokens,
        }
        if s.stop:
            body["stop"] = list(s.stop)
        if s.top_k:
            body["top_k"] = s.top_k  # a vLLM / SGLang extension
        if s.min_new_tokens:
            body["min_tokens"] = s.min_new_tokens  # likewise
        return body

    def _first_model(self) -> str:
        """The first model the server lists (`GET /models`), for a teacher configured without a name."""
        models = self._request("GET", "/models", None).get("data") or []
        if not models or "id" not in models[0]:
            raise APIError(f"GET {self.url}/models lists no model; set teacher.model to the model's name")
        return str(models[0]["id"])

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", path, json.dumps(body).encode())

    def _request(self, method: str, path: str, data: bytes | None) -> dict[str, Any]:
        """One API call, retried on 429 / 5xx / connection errors with exponential backoff and jitter."""
        url = self.url + path
        last = ""
        for attempt in range(self.retries + 1):
            with self._lock:
                self.usage["requests"] += 1
                self.usage["retries"] += int(attempt > 0)
            reply, last, wait = self._attempt(method, url, data)
            if reply is not None:
                return reply
            if attempt < self.retries:
                delay = min(60.0, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)
                time.sleep(wait if wait is not None else delay)
        raise APIError(f"{method} {url}: failed after {self.retries + 1} attempts; last error: {last}")

    def _attempt(self, method: str, url: str, data: bytes | None) -> tuple[dict | None, str, float | None]:
        """(the reply, or None with the error and the server's Retry-After) of one try; raises APIError
        for errors a retry cannot mend (4xx other than 429, a reply that is not JSON)."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as err:
            text = _cut(err.read())
            if err.code == 429 or err.code >= 500:
                return None, f"HTTP {err.code} {err.reason}: {text}", _retry_after(err.headers)
            hint = ""
            if err.code in (401, 403) and not self.api_key:
                hint = " (no API key was sent: put it in the environment variable named by api_key_env)"
            raise APIError(f"{method} {url}: HTTP {err.code} {err.reason}{hint}: {text}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            return None, f"{type(err).__name__}: {getattr(err, 'reason', None) or err}", None
        try:
            return json.loads(payload), "", None
        except json.JSONDecodeError:
            raise APIError(f"{method} {url}: the reply is not JSON: {_cut(payload)}") from None


def _retry_after(headers: Any) -> float | None:
    """The server's Retry-After in seconds (capped at a minute), when it sent one as a number."""
    try:
        return min(60.0, max(0.0, float(headers.get("Retry-After"))))
    except (TypeError, ValueError, AttributeError):
        return None


def _cut(value: Any, limit: int = 500) -> str:
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"
