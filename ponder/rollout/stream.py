"""From sampled tokens to the text a user sees, token by token: used by `ponder serve` and `ponder chat`.

    stream = TextStream(tokenizer, stops=["\\n\\n"], reasoning=True, in_think=opens_think(prompt_text))
    for token in tokens:
        delta = stream.push(token)      # Delta(reasoning="...", content="...")
    delta = stream.finish()

Three stages, each holding back only what the next tokens could still change:
- `IncrementalDecoder`: token ids -> text; a multi-byte character split over tokens is sent once it is whole
  (the decoded tail ends in U+FFFD until then), and a window of the previous tokens is decoded with the new
  ones so that tokenizers which drop a leading space at the start of a decode keep it mid-text.
- `StopTrimmer`: cuts the text before the first stop string (OpenAI's semantics; the engine itself stops
  after it and keeps it); a tail that could be the start of a stop string waits for the next text.
- `ReasoningSplitter`: `<think>…</think>` goes to `reasoning`, the rest to `content` with `<answer>` tags
  removed (DeepSeek's `reasoning_content`); a tail that could be the start of a tag waits; each part is
  stripped of leading and trailing whitespace.
The non-streamed answer is the same splitter run on the whole text at once (`split_reasoning`), so the
streamed deltas concatenate to it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace

from ponder.config import SamplingConfig
from ponder.rollout.base import Completion, Generator

THINK, END_THINK, ANSWER, END_ANSWER = "<think>", "</think>", "<answer>", "</answer>"


@dataclass
class Delta:
    """New text of one completion: reasoning (inside the think block) and content (the rest)."""

    reasoning: str = ""
    content: str = ""

    def __bool__(self) -> bool:
        return bool(self.reasoning or self.content)

    def __add__(self, other: Delta) -> Delta:
        return Delta(self.reasoning + other.reasoning, self.content + other.content)


class IncrementalDecoder:
    """Token ids in, text out, with no character split and no space lost at a chunk boundary."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0  # ids[prefix:read] were sent last time: decoded again as context for the new ones
        self.read = 0
        self.sent = ""  # the text of ids[prefix:read], decoded once when the window moves

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token: int) -> str:
        self.ids.append(token)
        now = self._decode(self.ids[self.prefix :])
        if len(now) <= len(self.sent) or now.endswith("\ufffd"):  # nothing new, or a character still partial
            return ""
        new = now[len(self.sent) :]
        self.prefix, self.read = self.read, len(self.ids)
        self.sent = self._decode(self.ids[self.prefix : self.read])
        return new

    def finish(self) -> str:
        """What is still held (an incomplete character at the very end decodes as U+FFFD)."""
        now = self._decode(self.ids[self.prefix :])
        self.prefix = self.read = len(self.ids)
        new, self.sent = now[len(self.sent) :], ""
        return new


def _held_prefix(text: str, marks: tuple[str, ...]) -> int:
    """Length of the longest tail of `text` that is a proper start of one of `marks` (0 when none)."""
    for n in range(min(len(text), max((len(m) for m in marks), default=1) - 1), 0, -1):
        if any(m.startswith(text[-n:]) for m in marks):
            return n
    return 0


def trim_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """`text` up to (without) the first occurrence of any stop string, and whether one occurred."""
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


class StopTrimmer:
    """The streaming `trim_stop`: after a stop string, nothing more comes out."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = tuple(stops)
        self.pending = ""
        self.stopped = False

    def push(self, text: str) -> str:
        if self.stopped or not self.stops:
            return "" if self.stopped else text
        self.pending += text
        cut, self.stopped = trim_stop(self.pending, list(self.stops))
        if self.stopped:
            self.pending = ""
            return cut
        # every stop string that starts in the sent text would start inside the held tail
        held = _held_prefix(self.pending, self.stops)
        out, self.pending = self.pending[: len(self.pending) - held], self.pending[len(self.pending) - held :]
        return out

    def finish(self) -> str:
        out, self.pending = self.pending, ""
        return out


class ReasoningSplitter:
    """Routes text to reasoning or content on `<think>` / `</think>`; drops `<answer>` tags.

    `in_think`: the prompt already opened the think block (a `<think>` prefill, or a template such as
    DeepSeek-R1's that ends with it), so the text starts as reasoning. Without a `</think>` the whole text
    is reasoning (a truncated thought). A `</think>` outside a think block and a `<think>` inside one (a
    model repeating its prefill) are dropped."""

    def __init__(self, in_think: bool = False) -> None:
        self.thinking = in_think
        self.saw_think = in_think
        self.pending = ""
        self.leading = {"reasoning": True, "content": True}  # no text sent yet: strip leading whitespace
        self.trailing = {"reasoning": "", "content": ""}  # whitespace held until more text follows

    def _tags(self) -> tuple[str, ...]:
        return (THINK, END_THINK) if self.thinking else (THINK, END_THINK, ANSWER, END_ANSWER)

    def _emit(self, out: Delta, text: str) -> None:
        channel = "reasoning" if self.thinking else "content"
        if self.leading[channel]:
            text = text.lstrip()
            if not text:
                return
            self.leading[channel] = False
        body = self.trailing[channel] + text
        kept = body.rstrip()
        self.trailing[channel] = body[len(kept) :]
        setattr(out, channel, getattr(out, channel) + kept)

    def push(self, text: str) -> Delta:
        out = Delta()
        self.pending += text
        while True:
            found = [(i, t) for t in self._tags() if (i := self.pending.find(t)) >= 0]
            if not found:
                break
            i, tag = min(found)
            self._emit(out, self.pending[:i])
            self.pending = self.pending[i + len(tag) :]
            if tag == THINK:
                self.thinking = self.saw_think = True
            elif tag == END_THINK and self.thinking:
                self.thinking = False
                self.trailing["reasoning"] = ""  # the thought is over: its trailing whitespace goes
        held = _held_prefix(self.pending, self._tags())
        self._emit(out, self.pending[: len(self.pending) - held])
        self.pending = self.pending[len(self.pending) - held :]
        return out

    def finish(self) -> Delta:
        out = Delta()
        self._emit(out, self.pending)  # a partial tag at the very end is text
        self.pending = ""
        return out


def split_reasoning(text: str, in_think: bool = False) -> tuple[str | None, str]:
    """(reasoning or None when there was no think block, content) of a whole response."""
    splitter = ReasoningSplitter(in_think)
    delta = splitter.push(text) + splitter.finish()
    return (delta.reasoning if splitter.saw_think else None), delta.content


def opens_think(prompt_text: str) -> bool:
    """Does the prompt leave a think block open (the response starts inside the reasoning)?"""
    return prompt_text.rfind(THINK) > prompt_text.rfind(END_THINK)


class TextStream:
    """One completion's tokens -> `Delta`s: decoder, then stop trimming, then (chat) the reasoning split."""

    def __init__(self, tokenizer, stops: list[str], reasoning: bool = False, in_think: bool = False) -> None:
        self.decoder = IncrementalDecoder(tokenizer)
        self.trimmer = StopTrimmer(stops)
        self.splitter = ReasoningSplitter(in_think) if reasoning else None

    @property
    def saw_think(self) -> bool:
        return self.splitter is not None and self.splitter.saw_think

    def _route(self, text: str) -> Delta:
        return self.splitter.push(text) if self.splitter else Delta(content=text)

    def push(self, token: int) -> Delta:
        return self._route(self.trimmer.push(self.decoder.push(token)))

    def finish(self) -> Delta:
        delta = self._route(self.trimmer.push(self.decoder.finish()) + self.trimmer.finish())
        return delta + self.splitter.finish() if self.splitter else delta


def generate(
    generator: Generator,
    prompt_ids: list[list[int]],
    sampling: SamplingConfig,
    seed: int,
    max_new_tokens: list[int] | None = None,
    on_token: Callable[[int, int], None] | None = None,
) -> list[Completion]:
    """`generator.generate` with per-prompt length limits and a per-token callback on any backend.

    Ponder's engine does both itself; for another `Generator` (transformers) prompts are generated in one
    call per distinct limit, and `on_token` is replayed once all are done (no streaming, same result)."""
    params = inspect.signature(generator.generate).parameters
    if "on_token" in params and "max_new_tokens" in params:
        return generator.generate(
            prompt_ids, sampling, seed, max_new_tokens=max_new_tokens, on_token=on_token
        )
    limits = max_new_tokens or [sampling.max_new_tokens] * len(prompt_ids)
    outs: list[Completion | None] = [None] * len(prompt_ids)
    for limit in dict.fromkeys(limits):
        rows = [i for i, m in enumerate(limits) if m == limit]
        got = generator.generate([prompt_ids[i] for i in rows], replace(sampling, max_new_tokens=limit), seed)
        for i, o in zip(rows, got, strict=True):
            outs[i] = o
    done = [o for o in outs if o is not None]
    if on_token is not None:
        for i, o in enumerate(done):
            for token in o.token_ids:
                on_token(i, token)
    return done
