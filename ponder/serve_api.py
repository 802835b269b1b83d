"""What `ponder serve` does with a request, HTTP aside: validation, batching into engine calls, responses.

`API.chat` / `API.completions` take a request's JSON body and return the OpenAI response (a dict) or, for
`stream: true`, an iterator of chunks; a malformed request raises `APIError` (HTTP 400 with an OpenAI error
body naming the field). One `Worker` thread owns the generator: requests that arrive while it is busy wait
in its queue, and the waiting requests with the same sampling settings (and seed) run as one
`Engine.generate` call. A request arriving mid-call waits for that call (the engine takes no new
sequences while it runs).
"""

from __future__ import annotations

import inspect
import queue
import random
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from ponder.config import SamplingConfig
from ponder.rollout.base import Completion, Generator
from ponder.rollout.stream import Delta, TextStream, generate, opens_think, split_reasoning, trim_stop

MAX_N = 128  # OpenAI's limit on n
ROLES = ("system", "developer", "user", "assistant")


class APIError(Exception):
    """A request the server refuses: HTTP `status` and an OpenAI-style error body."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        kind: str = "invalid_request_error",
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.kind, self.code = status, message, param, kind, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def _bad(param: str, message: str) -> APIError:
    return APIError(400, f"{param}: {message}", param)


def _number(body: dict, key: str, default: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(key, f"expected a number, got {value!r}")
    return float(value)


def _integer(body: dict, key: str, default: int | None, low: int) -> int | None:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(key, f"expected an integer, got {value!r}")
    if value < low:
        raise _bad(key, f"{value} is not allowed; it must be at least {low}")
    return value


def _stops(body: dict) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > 4:
        raise _bad("stop", f"expected a non-empty string or a list of at most 4 of them, got {stop!r}")
    return stops


@dataclass
class Params:
    """The sampling part of a request, validated."""

    n: int
    sampling: SamplingConfig  # max_new_tokens is set per request from `max_tokens` and the context left
    max_tokens: int | None
    seed: int | None
    stream: bool
    include_usage: bool


def parse_params(body: dict) -> Params:
    """n, temperature, top_p, top_k, max_tokens (or max_completion_tokens), stop, seed, stream (options)."""
    n = _integer(body, "n", 1, 1)
    assert n is not None
    if n > MAX_N:
        raise _bad("n", f"{n} is not allowed; it must be at most {MAX_N}")
    temperature = _number(body, "temperature", 1.0)
    if temperature < 0:
        raise _bad("temperature", f"{temperature} is not allowed; it must be >= 0 (0: greedy)")
    top_p = _number(body, "top_p", 1.0)
    if not 0 < top_p <= 1:
        raise _bad("top_p", f"{top_p} is not allowed; it must be in (0, 1]")
    top_k = _integer(body, "top_k", 0, 0)  # not OpenAI's; vLLM and others accept it (0: off)
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _integer(body, key, None, 1)
    seed = _integer(body, "seed", None, -(2**63))
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise _bad("stream", f"expected true or false, got {stream!r}")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise _bad("stream_options", f"expected {{'include_usage': bool}}, got {options!r}")
    sampling = SamplingConfig(temperature=temperature, top_p=top_p, top_k=top_k or 0, stop=_stops(body))
    return Params(n, sampling, max_tokens, seed, stream, bool(options.get("include_usage")))


def parse_messages(body: dict) -> list[dict]:
    """`messages` as [{role, content: str}]; text content parts are joined; other keys are dropped."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", f"expected a non-empty list of {{role, content}} objects, got {messages!r}")
    out = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad("messages", f"{where} must be an object with role and content, got {m!r}")
        if m.get("role") not in ROLES:
            raise _bad("messages", f"{where}.role = {m.get('role')!r}; expected one of {', '.join(ROLES)}")
        content = m.get("content")
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
                raise _bad("messages", f"{where}.content: only text parts are supported")
            content = "".join(str(p.get("text", "")) for p in content)
        if not isinstance(content, str):
            raise _bad("messages", f"{where}.content must be a string, got {content!r}")
        out.append({"role": "system" if m["role"] == "developer" else m["role"], "content": content})
    return out


def parse_prompts(body: dict) -> list[str | list[int]]:
    """`prompt`: a string, a list of strings, a list of token ids or a list of lists of token ids."""
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return list(prompt)
        if all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            return [list(prompt)]
        if all(isinstance(p, list) and p and all(isinstance(t, int) for t in p) for p in prompt):
            return [list(p) for p in prompt]
    raise _bad(
        "prompt", f"expected a string or a non-empty list of strings (or of token ids), got {prompt!r}"
    )


def render_chat(tokenizer, messages: list[dict], prefill: str = "") -> str:
    """The prompt text: the tokenizer's chat template with the assistant turn opened, then `prefill`."""
    if not getattr(tokenizer, "chat_template", None):
        raise _bad("messages", "this model's tokenizer has no chat template; use /v1/completions")
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as err:  # templates raise on what they refuse, e.g. roles that do not alternate
        raise _bad("messages", f"the model's chat template refused them: {err}") from None
    return text + prefill


@dataclass(eq=False)
class Job:
    """One request's sequences (each prompt repeated n times) and how its answer comes back: `events`
    (streaming) receives ("token", index, token id) as tokens are accepted, then ("end", 0, 0)."""

    prompts: list[list[int]]
    limits: list[int]  # max new tokens per sequence
    sampling: SamplingConfig
    seed: int | None  # None: a fresh random seed
    events: queue.Queue | None = None
    result: list[Completion] | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def key(self) -> tuple:
        """Jobs with equal keys can share one generate call (the limits are per sequence)."""
        s = self.sampling
        return (s.temperature, s.top_p, s.top_k, tuple(s.stop), self.seed)

    def end(self, result: list[Completion] | None, error: BaseException | None) -> None:
        self.result, self.error = result, error
        if self.events is not None:
            self.events.put(("end", 0, 0))
        self.done.set()

    def wait(self) -> list[Completion]:
        self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class Worker:
    """The one thread that runs the generator; batches the compatible jobs waiting in its queue."""

    def __init__(self, generator: Generator, max_sequences: int) -> None:
        self.generator = generator
        # Only the engine draws each sequence from its own seed; with transformers generate() a batch's
        # samples would depend on the other requests in it, so there every request runs alone.
        params = inspect.signature(generator.generate).parameters
        self.batching = "on_token" in params and "max_new_tokens" in params
        self.max_sequences = max_sequences  # per batched call (a single larger job still runs alone)
        self.rng = random.Random()  # seeds for unseeded batches, from the OS's entropy
        self.queue: queue.Queue[Job | None] = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name="ponder-serve-generate", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> Job:
        self.queue.put(job)
        return job

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=5)

    def _loop(self) -> None:
        waiting: list[Job] = []
        closing = False
        while not closing:
            if not waiting:
                job = self.queue.get()
                if job is None:
                    return
                waiting.append(job)
            while not closing:
                try:
                    job = self.queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    closing = True
                else:
                    waiting.append(job)
            batch, waiting = self._pick(waiting)
            self._run(batch)
        for job in waiting:
            job.end(None, RuntimeError("the server is shutting down"))

    def _pick(self, jobs: list[Job]) -> tuple[list[Job], list[Job]]:
        """The first job and the later ones that can join its call; the rest keep their order.

        A seeded job joins only if it shares no prompt with the batch: the engine numbers identical prompts
        of one call as samples 0, 1, ..., which would change what that seed gives."""
        first, batch, rest = jobs[0], [jobs[0]], []
        total = len(first.prompts)
        prompts = {tuple(p) for p in first.prompts}
        for job in jobs[1:]:
            mine = {tuple(p) for p in job.prompts}
            fits = (
                self.batching and job.key() == first.key() and total + len(job.prompts) <= self.max_sequences
            )
            if fits and (job.seed is None or not prompts & mine):
                batch.append(job)
                total += len(job.prompts)
                prompts |= mine
            else:
                rest.append(job)
        return batch, rest

    def _run(self, batch: list[Job]) -> None:
        owners = [(job, k) for job in batch for k in range(len(job.prompts))]
        prompts = [job.prompts[k] for job, k in owners]
        limits = [job.limits[k] for job, k in owners]

        def on_token(i: int, token: int) -> None:
            job, k = owners[i]
            if job.events is not None:
                job.events.put(("token", k, token))

        seed = batch[0].seed if batch[0].seed is not None else self.rng.getrandbits(63)
        sampling = replace(batch[0].sampling, max_new_tokens=max(limits))
        streaming = any(job.events is not None for job in batch)
        try:
            outs = generate(self.generator, prompts, sampling, seed, limits, on_token if streaming else None)
        except Exception as err:  # one failed call fails its requests, not the server
            traceback.print_exc()
            for job in batch:
                job.end(None, err)
            return
        start = 0
        for job in batch:
            job.end(outs[start : start + len(job.prompts)], None)
            start += len(job.prompts)


def _finish(out: Completion) -> str:
    return "stop" if out.finished else "length"  # finished: an end-of-sequence id or a stop string


def _usage(prompt_tokens: int, outs: list[Completion]) -> dict:
    completion = sum(len(o.token_ids) for o in outs)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }


class API:
    """The OpenAI endpoints over a `Worker`; `max_context` bounds prompt + completion tokens per sequence."""

    def __init__(self, tokenizer, worker: Worker, name: str, max_context: int, prefill: str = "") -> None:
        self.tokenizer, self.worker, self.name = tokenizer, worker, name
        self.max_context, self.prefill = max_context, prefill
        self.created = int(time.time())
        # A fast tokenizer's first call may reset its truncation settings (a write into the Rust object,
        # which fails if another thread is decoding at that moment): make that call now, before any thread.
        tokenizer("warm-up")

    def close(self) -> None:
        self.worker.close()

    def models(self, body: dict | None = None) -> dict:
        card = {"id": self.name, "object": "model", "created": self.created, "owned_by": "ponder"}
        return {"object": "list", "data": [{**card, "max_model_len": self.max_context}]}

    def chat(self, body: dict) -> dict | Iterator[dict]:
        """POST /v1/chat/completions."""
        self._check_model(body)
        messages, params = parse_messages(body), parse_params(body)
        text = render_chat(self.tokenizer, messages, self.prefill)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]  # the template has its own BOS
        job = self._submit([ids], self._limits(params, [ids], None, "messages"), params)
        head = self._head("chatcmpl", "chat.completion")
        in_think = opens_think(text)
        if params.stream:
            return self._chat_stream(job, head, params, len(ids), in_think)
        outs = job.wait()
        choices = []
        for i, o in enumerate(outs):
            reasoning, content = split_reasoning(trim_stop(o.text, params.sampling.stop)[0], in_think)
            message = {"role": "assistant", "content": content, "reasoning_content": reasoning}
            choices.append({"index": i, "message": message, "logprobs": None, "finish_reason": _finish(o)})
        return {**head, "choices": choices, "usage": _usage(len(ids), outs)}

    def completions(self, body: dict) -> dict | Iterator[dict]:
        """POST /v1/completions; the choices of prompt p are p * n ... p * n + n - 1."""
        self._check_model(body)
        prompts, params = parse_prompts(body), parse_params(body)
        ids = [self.tokenizer(p)["input_ids"] if isinstance(p, str) else p for p in prompts]
        vocab = len(self.tokenizer)
        if any(not 0 <= t < vocab for p in ids for t in p):
            raise _bad("prompt", f"token ids must be in [0, {vocab})")
        job = self._submit(ids, self._limits(params, ids, 16, "prompt"), params)  # 16: OpenAI's default
        head = self._head("cmpl", "text_completion")
        prompt_tokens = sum(len(p) for p in ids)
        if params.stream:
            return self._text_stream(job, head, params, prompt_tokens)
        outs = job.wait()
        choices = [
            {"index": i, "text": trim_stop(o.text, params.sampling.stop)[0], "logprobs": None}
            | {"finish_reason": _finish(o)}
            for i, o in enumerate(outs)
        ]
        return {**head, "choices": choices, "usage": _usage(prompt_tokens, outs)}

    def _check_model(self, body: dict) -> None:
        if body.get("model") != self.name:
            raise _bad("model", f"unknown model {body.get('model')!r}; this server serves {self.name!r}")

    def _head(self, prefix: str, kind: str) -> dict:
        return {
            "id": f"{prefix}-{uuid.uuid4().hex}",
            "object": kind,
            "created": int(time.time()),
            "model": self.name,
        }

    def _limits(self, params: Params, prompts: list[list[int]], default: int | None, param: str) -> list[int]:
        """Max new tokens per prompt: `max_tokens`, else `default`, else all the context left."""
        limits = []
        for p in prompts:
            room = self.max_context - len(p)
            if not p:
                raise _bad(param, "the prompt has no tokens")
            if room < 1:
                raise _bad(
                    param,
                    f"the prompt is {len(p)} tokens; this server holds at most {self.max_context} tokens per "
                    "sequence, prompt and completion (ponder serve --max-context)",
                )
            if params.max_tokens is not None and params.max_tokens > room:
                raise _bad(
                    "max_tokens",
                    f"{params.max_tokens} new tokens do not fit after a {len(p)}-token prompt: at most "
                    f"{room} (max context {self.max_context})",
                )
            limits.append(params.max_tokens or (room if default is None else min(default, room)))
        return limits

    def _submit(self, prompts: list[list[int]], limits: list[int], params: Params) -> Job:
        seqs = [p for p in prompts for _ in range(params.n)]
        per_seq = [m for m in limits for _ in range(params.n)]
        events: queue.Queue | None = queue.Queue() if params.stream else None
        return self.worker.submit(Job(seqs, per_seq, params.sampling, params.seed, events))

    def _deltas(self, job: Job, streams: list[TextStream]) -> Iterator[tuple[int, Delta]]:
        """(choice, new text) as the worker reports tokens, then what each stream still held."""
        assert job.events is not None
        while True:
            kind, i, token = job.events.get()
            if kind == "end":
                break
            delta = streams[i].push(token)
            if delta:
                yield i, delta
        if job.error is not None:
            raise job.error
        for i, stream in enumerate(streams):
            delta = stream.finish()
            if delta:
                yield i, delta

    def _chat_stream(
        self, job: Job, head: dict, params: Params, prompt_tokens: int, in_think: bool
    ) -> Iterator[dict]:
        head = {**head, "object": "chat.completion.chunk"}

        def chunk(i: int, delta: dict, finish: str | None = None) -> dict:
            return {
                **head,
                "choices": [{"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }

        streams = [TextStream(self.tokenizer, params.sampling.stop, True, in_think) for _ in job.prompts]
        for i in range(len(streams)):
            yield chunk(i, {"role": "assistant", "content": ""})
        for i, delta in self._deltas(job, streams):
            if delta.reasoning:  # a delta can hold the end of the thought and the start of the answer
                yield chunk(i, {"reasoning_content": delta.reasoning})
            if delta.content:
                yield chunk(i, {"content": delta.content})
        outs = job.wait()
        for i, o in enumerate(outs):
            yield chunk(i, {}, _finish(o))
        if params.include_usage:
            yield {**head, "choices": [], "usage": _usage(prompt_tokens, outs)}

    def _text_stream(self, job: Job, head: dict, params: Params, prompt_tokens: int) -> Iterator[dict]:
        def chunk(i: int, text: str, finish: str | None = None) -> dict:
            return {
                **head,
                "choices": [{"index": i, "text": text, "logprobs": None, "finish_reason": finish}],
            }

        streams = [TextStream(self.tokenizer, params.sampling.stop) for _ in job.prompts]
        for i, delta in self._deltas(job, streams):
            yield chunk(i, delta.content)
        outs = job.wait()
        for i, o in enumerate(outs):
            yield chunk(i, "", _finish(o))
        if params.include_usage:
            yield {**head, "choices": [], "usage": _usage(prompt_tokens, outs)}
