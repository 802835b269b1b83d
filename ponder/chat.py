"""`ponder chat`: talk to a model in the terminal, token by token.

    ponder chat smollm2-135m --system "You are a helpful assistant."
    ponder chat runs/r1_zero-.../checkpoints/step-40 --prefill "<think>"   # as ponder's default prompt trains

Every turn renders the whole conversation with the model's chat template. As DeepSeek-R1 does, the
reasoning of earlier turns is not sent back: the history keeps each answer only. The reasoning streams
dimmed and the answer plainly (`ponder/rollout/stream.py` splits them, as `ponder serve` does).
`/reset` clears the history, `/exit` or Ctrl-D quits, Ctrl-C stops the answer being written.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from dataclasses import replace

from ponder.config import ConfigError, SamplingConfig
from ponder.rollout.base import Generator
from ponder.rollout.stream import Delta, TextStream, generate, opens_think, split_reasoning, trim_stop
from ponder.serve import add_model_arguments, load_backend
from ponder.serve_api import APIError, render_chat


class Conversation:
    """The messages so far and how to extend them by one exchange."""

    def __init__(
        self,
        tokenizer,
        generator: Generator,
        max_context: int,
        sampling: SamplingConfig,
        system: str = "",
        prefill: str = "",
        seed: int | None = None,
    ) -> None:
        self.tokenizer, self.generator, self.max_context = tokenizer, generator, max_context
        self.sampling, self.system, self.prefill = sampling, system, prefill
        self.seed = seed
        self.rng = random.Random()
        self.messages: list[dict] = []
        self.turns = 0

    def reset(self) -> None:
        self.messages = []

    def reply(self, user: str, on_delta: Callable[[Delta], None]) -> tuple[str | None, str]:
        """(reasoning, answer) to `user`, streamed to `on_delta`; the exchange joins the history (the
        answer only) once it is complete."""
        messages = [*self.messages, {"role": "user", "content": user}]
        head = [{"role": "system", "content": self.system}] if self.system else []
        try:
            text = render_chat(self.tokenizer, head + messages, self.prefill)
        except APIError as err:
            raise ConfigError(err.message) from None
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        room = self.max_context - len(ids)
        if room < 1:
            raise ConfigError(
                f"the conversation is {len(ids)} tokens, over the {self.max_context}-token context; /reset"
            )
        in_think = opens_think(text)
        stream = TextStream(self.tokenizer, self.sampling.stop, reasoning=True, in_think=in_think)
        sampling = replace(self.sampling, max_new_tokens=min(self.sampling.max_new_tokens, room))
        seed = self.rng.getrandbits(63) if self.seed is None else self.seed + self.turns
        on_token = lambda _, token: on_delta(stream.push(token))  # noqa: E731
        out = generate(self.generator, [ids], sampling, seed, on_token=on_token)[0]
        on_delta(stream.finish())
        reasoning, answer = split_reasoning(trim_stop(out.text, self.sampling.stop)[0], in_think)
        self.messages = [*messages, {"role": "assistant", "content": answer}]
        self.turns += 1
        return reasoning, answer


class _Printer:
    """Writes deltas as they come: reasoning dimmed, a blank line, then the answer."""

    def __init__(self, console) -> None:
        self.console = console
        self.channel: str | None = None

    def __call__(self, delta: Delta) -> None:
        for channel, text in (("reasoning", delta.reasoning), ("content", delta.content)):
            if not text:
                continue
            if self.channel not in (None, channel):
                self.console.print("\n")
            self.channel = channel
            style = "dim" if channel == "reasoning" else None
            self.console.print(text, style=style, end="", markup=False, highlight=False, soft_wrap=True)
            self.console.file.flush()

    def end(self) -> None:
        if self.channel is not None:
            self.console.print()


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--system", default="", help="a system message opening the conversation")
    p.add_argument("--temperature", type=float, default=0.6, help="0: greedy (default: R1's 0.6)")
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-new-tokens", type=int, default=1024, help="per answer")
    p.add_argument("--seed", type=int, help="turn t samples with seed + t (default: random)")


def run(args: argparse.Namespace) -> int:
    """`ponder chat`: the read-reply loop."""
    from rich.console import Console

    sampling = SamplingConfig(
        temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens
    )
    console = Console(highlight=False)
    tokenizer, generator, context = load_backend(args, 1)
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"{args.model}'s tokenizer has no chat template; ponder chat needs one")
    chat = Conversation(tokenizer, generator, context, sampling, args.system, args.prefill, args.seed)
    console.print(f"[bold]ponder chat[/] with {args.model}: /reset clears the conversation, /exit quits")
    while True:
        try:
            line = console.input("[bold green]you>[/] ").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return 0
        if line in ("/exit", "/quit"):
            return 0
        if line == "/reset":
            chat.reset()
            console.print("[dim](conversation cleared)[/]")
            continue
        if not line:
            continue
        printer = _Printer(console)
        try:
            chat.reply(line, printer)
        except KeyboardInterrupt:
            console.print("\n[dim](stopped; this exchange is not kept)[/]")
            continue
        except ConfigError as err:
            console.print(f"[red]{err}[/]")
            continue
        printer.end()
