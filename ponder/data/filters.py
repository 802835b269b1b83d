"""Filters over sampled responses, for rejection sampling (DeepSeek-R1, arXiv:2501.12948 section 2.3.3).

R1 builds its reasoning SFT data by sampling several responses per prompt from the RL checkpoint and keeping
only correct ones, after dropping "chain-of-thought with mixed languages, long paragraphs, and code blocks".
Each of those rules is a pure function here, testable on its own:

    sample filters   `fn(sample, **params) -> Verdict`          malformed, wrong_answer, mixed_language,
                                                                 long_paragraph, code_in_reasoning
    set filters      `fn(samples, **params) -> list[Verdict]`   duplicate, cap_per_prompt

A `Verdict` is keep/drop with a reason. `make_filter(name, **params)` binds and checks parameters,
`run_pipeline(samples, filters)` applies the filters in order, each to what the previous ones kept, and
counts how many each removed. `reformat` turns a kept `<think>R</think><answer>A</answer>` response into
the readable output format (R1: the reasoning, then a short summary).

    f = [make_filter("malformed"), make_filter("wrong_answer"), make_filter("cap_per_prompt", k=2)]
    result = run_pipeline(samples, f)      # result.kept, result.removed == {"malformed": 3, ...}
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ponder.registry import Registry
from ponder.rewards import REWARDS, Reference, Unscorable, get_reward
from ponder.rewards.extract import TAGS, answer_block, strip_tags
from ponder.rewards.language import (
    LANGUAGE_SCRIPTS,
    chain_of_thought,
    make_language_consistency,
    split_words,
)
from ponder.rewards.rules import format_reward


@dataclass(frozen=True)
class Sample:
    """One sampled response to one prompt.

    `response` is the assistant's whole turn, prefill included (what the rewards judge); `index` is the
    sample's number among the prompt's n samples; `ref` is the prompt's ground truth (for `wrong_answer`).
    """

    prompt_id: str
    index: int
    response: str
    ref: Reference | None = None
    num_tokens: int = 0
    finished: bool = True

    @property
    def reasoning(self) -> str:
        """The `<think>` block (up to the end when never closed; the whole response without a tag)."""
        return chain_of_thought(self.response)

    @property
    def answer(self) -> str | None:
        """The one valid `<answer>` block after the reasoning, stripped, or None (see `answer_block`)."""
        return answer_block(self.response)


@dataclass(frozen=True)
class Verdict:
    """Keep or drop, and why (empty when kept)."""

    keep: bool
    reason: str = ""


KEEP = Verdict(True)


def drop(reason: str) -> Verdict:
    return Verdict(False, reason)


# ------------------------------------------------------------------------------------ format


def is_well_formed(response: str) -> bool:
    """Exactly `<think>R</think><answer>A</answer>` up to surrounding whitespace, R and A non-blank (the
    R1-Zero format; the `format` reward)."""
    return format_reward(response, Reference("")) == 1.0


def split_response(response: str) -> tuple[str, str] | None:
    """(reasoning, answer), both stripped, of a well-formed response; None otherwise."""
    if not is_well_formed(response):
        return None
    answer = answer_block(response)
    return (chain_of_thought(response).strip(), answer) if answer is not None else None


_SLOT = re.compile(r"\{reasoning\}|\{answer\}")


def reformat(response: str, template: str = "<think>\n{reasoning}\n</think>\n\n{answer}") -> str:
    """A well-formed response rewritten into `template`, whose `{reasoning}` and `{answer}` are replaced
    literally (other braces, e.g. LaTeX, are left alone).

    R1's SFT data reads "reasoning, then a summary" (section 2.3.1: `|special_token|<reasoning_process>|
    special_token|<summary>`); the default keeps the think tags, which the RL checkpoint already emits, and
    drops the answer tags. Raises ValueError for a malformed response (filter with `malformed` first).
    """
    parts = split_response(response)
    if parts is None:
        raise ValueError(
            f"cannot reformat a response that is not <think>…</think><answer>…</answer>: {response[:80]!r}"
        )
    values = dict(zip(("{reasoning}", "{answer}"), parts, strict=True))
    return _SLOT.sub(lambda m: values[m.group(0)], template)  # one pass: a "{answer}" in R stays as written


def _format_problem(response: str) -> str:
    counts = {tag: response.count(tag) for tag in TAGS}
    wrong = [f"{tag} x{n}" for tag, n in counts.items() if n != 1]
    if wrong:
        return "tags not exactly once: " + ", ".join(wrong)
    return "not <think>…</think><answer>…</answer> (order, empty block, or text outside the blocks)"


# ------------------------------------------------------------------------------------ registry

FILTERS = Registry("filter")


@dataclass(frozen=True)
class FilterSpec:
    """A registered filter: the function and whether it judges one sample or the whole set."""

    fn: Callable[..., Any]
    per_sample: bool


def register_filter(name: str, per_sample: bool = True) -> Callable:
    def deco(fn: Callable) -> Callable:
        FILTERS.register(name)(FilterSpec(fn, per_sample))
        return fn

    return deco


# Parameter checks shared by every filter that takes the parameter: (test, what is allowed).
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "threshold": (lambda v: isinstance(v, int | float) and 0 <= v <= 1, "a number in [0, 1]"),
    "language": (
        lambda v: v == "" or v in LANGUAGE_SCRIPTS,
        f"'' (the item's language) or one of {sorted(LANGUAGE_SCRIPTS)}",
    ),
    "identifier": (lambda v: v in ("script", "auto", "langid"), "'script', 'auto' or 'langid'"),
    "parts": (lambda v: v in ("reasoning", "answer", "both"), "'reasoning', 'answer' or 'both'"),
    "max_chars": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0 (0: no limit)"),
    "max_words": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0 (0: no limit)"),
    "fenced": (lambda v: isinstance(v, bool), "true or false"),
    "indented": (lambda v: isinstance(v, bool), "true or false"),
    "min_indented_lines": (lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    "reward": (lambda v: v == "auto" or v in REWARDS, "'auto' or a registered reward"),
    "scope": (lambda v: v in ("prompt", "all"), "'prompt' or 'all'"),
    "k": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1"),
    "prefer": (lambda v: v in ("shortest", "first"), "'shortest' or 'first'"),
}


@dataclass(frozen=True)
class Filter:
    """A registered filter with its parameters bound: one pipeline step."""

    name: str
    spec: FilterSpec
    params: Mapping[str, Any] = field(default_factory=dict)

    def apply(self, samples: list[Sample], map_fn: Callable = map) -> list[Verdict]:
        """One verdict per sample; sample filters run through `map_fn` (e.g. a thread pool's `map`)."""
        if self.spec.per_sample:
            return list(map_fn(functools.partial(self.spec.fn, **self.params), samples))
        return list(self.spec.fn(samples, **self.params))


def filter_params(name: str) -> list[str]:
    """The parameters filter `name` accepts."""
    return list(inspect.signature(FILTERS[name].fn).parameters)[1:]


def make_filter(name: str, **params: Any) -> Filter:
    """Filter `name` with `params` bound; an unknown name or parameter, or a bad value, raises ValueError
    naming it."""
    spec = FILTERS[name]
    allowed = filter_params(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"filter {name!r} got unknown parameter(s) {unknown}; allowed: {allowed}")
    for key, value in params.items():
        test, what = _RULES[key]
        if not test(value):
            raise ValueError(f"filter {name!r}: {key} = {value!r} is not allowed; it must be {what}")
    return Filter(name, spec, dict(params))


# ------------------------------------------------------------------------------------ sample filters


@register_filter("malformed")
def malformed(sample: Sample) -> Verdict:
    """Drop unless the response is exactly `<think>R</think><answer>A</answer>` (R, A non-blank)."""
    return KEEP if is_well_formed(sample.response) else drop(_format_problem(sample.response))


@register_filter("wrong_answer")
def wrong_answer(sample: Sample, reward: str = "auto") -> Verdict:
    """Drop unless the verifier accepts the answer block: the strict reward `reward` must give 1.0.

    "auto" picks `math_accuracy` (math-verify, a box in the block unwrapped) for items checked by "math",
    else `accuracy` (the item's own checker: numeric, exact, countdown): the task's check, as in RL.
    A verifier timeout or crash (Unscorable) drops the sample too: unverified is not verified-correct.
    """
    if sample.ref is None:
        return drop("no reference answer")
    name = reward if reward != "auto" else "math_accuracy" if sample.ref.checker == "math" else "accuracy"
    try:
        score = get_reward(name)(sample.response, sample.ref)
    except Unscorable as err:
        return drop(f"unscorable: {err}")
    if score == 1.0:
        return KEEP
    return drop(f"{name} = {score:g}: answer {sample.answer!r}, reference {sample.ref.answer!r}")


@functools.lru_cache(maxsize=4)
def _language_scorer(identifier: str) -> Callable[[str, Reference], float]:
    return make_language_consistency(identifier)


@register_filter("mixed_language")
def mixed_language(
    sample: Sample,
    threshold: float = 0.95,
    language: str = "",
    identifier: str = "script",
    parts: str = "both",
) -> Verdict:
    """Drop when the reasoning or the answer has less than `threshold` of its words in the target language.

    The share is the `language_consistency` reward's (R1 section 2.3.2: target-language words / words),
    computed on each part alone; a part without words ("42", "x = 3") mixes nothing and passes.
    language: ISO 639-1 code, "" = the item's `ref.meta["language"]`, else "en". identifier: "script"
    (Unicode scripts: reproducible everywhere), "auto" / "langid" (also tells Latin languages apart).
    parts: "reasoning", "answer" or "both". A lone Greek letter in English math counts as off-target, hence
    a default below 1.
    """
    target = language or (sample.ref.meta.get("language", "en") if sample.ref else "en")
    texts = {"reasoning": sample.reasoning, "answer": sample.answer or ""}
    scorer = _language_scorer(identifier)
    ref = Reference("", "exact", {"language": target})
    for part in ("reasoning", "answer") if parts == "both" else (parts,):
        text = texts[part]
        if not split_words(text):
            continue
        share = scorer(text, ref)  # text has no <think> tag: the scorer reads all of it
        if share < threshold:
            return drop(f"{part}: {share:.2f} of words in {target!r} < {threshold}")
    return KEEP


_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


def paragraphs(text: str) -> list[str]:
    """Non-blank paragraphs of `text` (blocks separated by blank lines), stripped."""
    return [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]


@register_filter("long_paragraph")
def long_paragraph(sample: Sample, max_chars: int = 2000, max_words: int = 0) -> Verdict:
    """Drop when a paragraph of the reasoning or of the answer exceeds `max_chars` characters or
    `max_words` whitespace-separated words (0 turns a limit off). Tags do not count; the reasoning and the
    answer are split apart even when no blank line separates them."""
    answer = sample.answer
    texts = [sample.reasoning, answer] if answer is not None else [strip_tags(sample.response)]
    for paragraph in (p for text in texts for p in paragraphs(text)):
        if max_chars and len(paragraph) > max_chars:
            return drop(f"paragraph of {len(paragraph)} characters > {max_chars}")
        words = len(paragraph.split())
        if max_words and words > max_words:
            return drop(f"paragraph of {words} words > {max_words}")
    return KEEP


_FENCE = re.compile(r"^ {0,3}(```|~~~)", re.MULTILINE)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s")


def _indented_block(text: str, min_lines: int) -> bool:
    """Whether `text` has a Markdown indented code block: `min_lines` consecutive lines indented by a tab
    or 4+ spaces after a blank line (or the start), the first not a list item (a nested list). An indented
    line right after a paragraph line continues the paragraph, as in Markdown."""
    run, after_blank = 0, True
    for line in text.split("\n"):
        if not line.strip():
            run, after_blank = 0, True
            continue
        if line.startswith(("\t", "    ")) and (run or (after_blank and not _LIST_ITEM.match(line))):
            run += 1
            if run >= min_lines:
                return True
        else:
            run = 0
        after_blank = False
    return False


@register_filter("code_in_reasoning")
def code_in_reasoning(
    sample: Sample, fenced: bool = True, indented: bool = True, min_indented_lines: int = 2
) -> Verdict:
    """Drop when the reasoning holds a code block: a ``` or ~~~ fence (`fenced`), or an indented block
    of at least `min_indented_lines` lines (`indented`). Inline code and formulas pass."""
    reasoning = sample.reasoning
    if fenced and _FENCE.search(reasoning):
        return drop("fenced code block in the reasoning")
    if indented and _indented_block(reasoning, min_indented_lines):
        return drop("indented code block in the reasoning")
    return KEEP


# ------------------------------------------------------------------------------------ set filters


def normalize_response(text: str) -> str:
    """Lowercase with whitespace runs collapsed: the key under which `duplicate` compares responses."""
    return " ".join(text.lower().split())


@register_filter("duplicate", per_sample=False)
def duplicate(samples: list[Sample], scope: str = "prompt") -> list[Verdict]:
    """Drop a response whose normalised text (`normalize_response`) came earlier in `samples`: among the
    same prompt's samples (scope "prompt") or any prompt's (scope "all"). The first one is kept."""
    seen: dict[tuple[str, str], int] = {}
    out = []
    for s in samples:
        key = (s.prompt_id if scope == "prompt" else "", normalize_response(s.response))
        if key in seen:
            out.append(drop(f"duplicate of sample {seen[key]}"))
        else:
            seen[key] = s.index
            out.append(KEEP)
    return out


@register_filter("cap_per_prompt", per_sample=False)
def cap_per_prompt(samples: list[Sample], k: int = 1, prefer: str = "shortest") -> list[Verdict]:
    """Keep at most `k` samples per prompt: the shortest responses (characters; ties by sample index) or
    the first ones in order (`prefer` = "first"). A cap spreads the data over prompts instead of letting
    easy prompts, where every sample is right, dominate it."""
    by_prompt: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        by_prompt.setdefault(s.prompt_id, []).append(i)
    keep: set[int] = set()
    for rows in by_prompt.values():
        if prefer == "shortest":
            rows = sorted(rows, key=lambda i: (len(samples[i].response), samples[i].index))
        keep.update(rows[:k])
    return [KEEP if i in keep else drop(f"over the cap of {k} per prompt") for i in range(len(samples))]


# ------------------------------------------------------------------------------------ pipeline


@dataclass
class Rejected:
    """A dropped sample, the filter that dropped it and why."""

    sample: Sample
    filter: str
    reason: str


@dataclass
class PipelineResult:
    """What survived every filter (in input order), how many each filter removed (in pipeline order), and
    the dropped samples with their reasons."""

    kept: list[Sample]
    removed: dict[str, int]
    rejected: list[Rejected]


def run_pipeline(samples: Iterable[Sample], filters: list[Filter], map_fn: Callable = map) -> PipelineResult:
    """Apply `filters` in order, each to the samples the previous ones kept; a sample is counted under the
    first filter that drops it. Two filters of the same name are an error (their counts would merge)."""
    names = [f.name for f in filters]
    if len(set(names)) != len(names):
        raise ValueError(f"a filter appears twice in the pipeline: {names}")
    kept = list(samples)
    removed: dict[str, int] = {}
    rejected: list[Rejected] = []
    for f in filters:
        verdicts = f.apply(kept, map_fn)
        if len(verdicts) != len(kept):
            raise RuntimeError(f"filter {f.name!r} gave {len(verdicts)} verdicts for {len(kept)} samples")
        survivors = []
        for s, v in zip(kept, verdicts, strict=True):
            if v.keep:
                survivors.append(s)
            else:
                rejected.append(Rejected(s, f.name, v.reason))
        removed[f.name] = len(kept) - len(survivors)
        kept = survivors
    return PipelineResult(kept, removed, rejected)
