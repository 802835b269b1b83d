"""Language-consistency reward (DeepSeek-R1, arXiv:2501.12948 section 2.3.2).

R1 found that RL made the chain of thought mix languages and added a reward equal to "the proportion of
target language words in the CoT". Here:

    language_consistency = #words of the CoT in the target language / #words of the CoT

The CoT is the `<think>` block (the whole response when there is none); the target is
`ref.meta.get("language", "en")`, an ISO 639-1 code.

What a "word" is: a run of letters of one script (Latin, Cyrillic, Greek, Arabic, Hebrew, Devanagari,
Hangul, ...), except for Han, Hiragana, Katakana and Thai, where every character counts as a word, since
those scripts do not separate words by spaces. Digits, punctuation and math symbols are not words, so
"x = 3 + 4" has one word ("x"). A word is in the target language when its script belongs to the target
(Japanese: Han or kana; Chinese: Han; English: Latin; ...).

Script detection cannot tell English from French. When the optional `langid` package (Lui & Baldwin 2012,
pure Python, ~2 MB, runs offline: `pip install langid`) is installed and the target is a Latin-script
language it knows, each sentence's Latin words are also classified as a whole, and they count as off-target
when langid names another language with probability >= `LANGID_MIN_PROB`. Short sentences (fewer than
`LANGID_MIN_WORDS` Latin words) get the benefit of the doubt: langid is unreliable on "So x = 3".
Scores then depend on whether langid is installed; `make_language_consistency(identifier="script")` gives
the reproducible script-only reward.
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ponder.rewards.base import Reference, register_reward
from ponder.rewards.extract import THINK_CLOSE, THINK_OPEN

# (first code point, last code point, script), sorted; a letter outside every range is "other".
_SCRIPT_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0041, 0x005A, "latin"),
    (0x0061, 0x007A, "latin"),
    (0x00C0, 0x024F, "latin"),  # Latin-1 letters, Latin Extended-A/B
    (0x0370, 0x03FF, "greek"),
    (0x0400, 0x052F, "cyrillic"),
    (0x0590, 0x05FF, "hebrew"),
    (0x0600, 0x06FF, "arabic"),
    (0x0750, 0x077F, "arabic"),
    (0x0900, 0x097F, "devanagari"),
    (0x0E00, 0x0E7F, "thai"),
    (0x1100, 0x11FF, "hangul"),
    (0x1E00, 0x1EFF, "latin"),  # Latin Extended Additional (Vietnamese)
    (0x1F00, 0x1FFF, "greek"),
    (0x3040, 0x309F, "hiragana"),
    (0x30A0, 0x30FF, "katakana"),
    (0x3130, 0x318F, "hangul"),
    (0x3400, 0x4DBF, "han"),
    (0x4E00, 0x9FFF, "han"),
    (0xAC00, 0xD7AF, "hangul"),
    (0xF900, 0xFAFF, "han"),
    (0xFF66, 0xFF9F, "katakana"),  # half-width
    (0x20000, 0x2FA1F, "han"),
)
_RANGE_STARTS = [start for start, _, _ in _SCRIPT_RANGES]

# Scripts written without spaces between words: each character is one word (R1 does not say how it
# counted Chinese "words"; characters avoid a segmenter dependency).
_CHARACTER_SCRIPTS = frozenset({"han", "hiragana", "katakana", "thai"})

LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    **{
        code: frozenset({"latin"})
        for code in "en fr de es it pt nl sv da no nb fi pl cs sk sl hr ro hu tr vi id ms tl et lv lt ca eu "
        "ga is sq sw az uz".split()
    },
    **{code: frozenset({"cyrillic"}) for code in "ru uk be bg sr mk kk ky mn tg".split()},
    **{code: frozenset({"arabic"}) for code in "ar fa ur ps".split()},
    **{code: frozenset({"devanagari"}) for code in "hi mr ne sa".split()},
    "zh": frozenset({"han"}),
    "ja": frozenset({"han", "hiragana", "katakana"}),
    "ko": frozenset({"hangul", "han"}),
    "el": frozenset({"greek"}),
    "he": frozenset({"hebrew"}),
    "th": frozenset({"thai"}),
}

LANGID_MIN_WORDS = 4  # fewer Latin words in a sentence: too little evidence for langid
LANGID_MIN_PROB = 0.9  # langid must be this sure of another language to call a sentence off-target
_SENTENCE_END = re.compile(r"[.!?;:\n。！？；：]+")


@dataclass(frozen=True)
class Word:
    """One word of a text and the script it is written in."""

    text: str
    script: str


def script_of(char: str) -> str:
    """The script of one character by Unicode range ("latin", "han", "cyrillic", ...), "other" if none."""
    code = ord(char)
    i = bisect.bisect_right(_RANGE_STARTS, code) - 1
    if i >= 0 and code <= _SCRIPT_RANGES[i][1]:
        return _SCRIPT_RANGES[i][2]
    return "other"


def split_words(text: str) -> list[Word]:
    """Words of `text` (see the module docstring): letter runs of one script, single CJK/Thai characters.

    Combining marks (Unicode category M*) continue the current word, so Devanagari vowel signs and Arabic
    diacritics do not split words.
    """
    words: list[Word] = []
    current, current_script = "", ""
    for char in text:
        is_mark = unicodedata.category(char).startswith("M")
        if is_mark and current:
            current += char
            continue
        script = script_of(char) if char.isalpha() else ""
        if current and (script != current_script or script in _CHARACTER_SCRIPTS):
            words.append(Word(current, current_script))
            current, current_script = "", ""
        if script and script != "other":
            current, current_script = current + char, script
    if current:
        words.append(Word(current, current_script))
    return words


def chain_of_thought(completion: str) -> str:
    """The text inside `<think>...</think>` (up to the end if never closed); the whole completion if no
    `<think>` tag. A completion with a prefilled `<think>` has only the closing tag: the CoT is what
    precedes it."""
    start = completion.find(THINK_OPEN)
    end = completion.find(THINK_CLOSE, max(start, 0))
    if start < 0 and end < 0:
        return completion
    begin = start + len(THINK_OPEN) if start >= 0 else 0
    return completion[begin:] if end < 0 else completion[begin:end]


@functools.lru_cache(maxsize=1)
def _langid_identifier() -> Any | None:
    """A langid identifier with normalised probabilities, or None when langid is not installed.

    Cached: loading the model takes about 2 s. A private instance, not langid's module-level one, so
    nothing else in the process changes its settings.
    """
    try:
        from langid.langid import LanguageIdentifier, model
    except ImportError:
        return None
    return LanguageIdentifier.from_modelstring(model, norm_probs=True)


def _off_target_latin(sentence: list[Word], target: str, identifier: Any) -> int:
    """How many Latin words of one sentence langid confidently puts in a language other than `target`."""
    latin = [word.text for word in sentence if word.script == "latin"]
    if len(latin) < LANGID_MIN_WORDS:
        return 0
    language, prob = _classify(identifier, " ".join(latin))
    return len(latin) if language != target and prob >= LANGID_MIN_PROB else 0


def _classify(identifier: Any, text: str) -> tuple[str, float]:
    """langid's `classify` (most probable language and its normalised probability), computed sparsely.

        log p(l | text) = log p(l) + sum_f count_f * log p(f | l) - logsumexp over l

    langid multiplies the dense count vector (uint32) by the float32 model, a mixed-dtype product that
    costs ~10 ms per call; a sentence has a few dozen non-zero features, so the sparse product is ~100x
    cheaper and gives the same answer.
    """
    import numpy as np  # a dependency of langid, so present whenever this runs

    counts = identifier.instance2fv(text)
    features = counts.nonzero()[0]
    log_p = counts[features].astype(np.float64) @ identifier.nb_ptc[features] + identifier.nb_pc
    probs = np.exp(log_p - log_p.max())
    best = int(probs.argmax())
    return str(identifier.nb_classes[best]), float(probs[best] / probs.sum())


def target_share(text: str, target: str, identifier: Any | None = None) -> float:
    """Share of the words of `text` in language `target`; 0.0 when `text` has no words.

    identifier: a langid `LanguageIdentifier` to split Latin-script languages apart, or None for script
    detection only. An unknown `target` raises ValueError listing the supported codes.
    """
    if target not in LANGUAGE_SCRIPTS:
        raise ValueError(f"unknown target language {target!r}; supported: {sorted(LANGUAGE_SCRIPTS)}")
    scripts = LANGUAGE_SCRIPTS[target]
    use_langid = identifier is not None and scripts == {"latin"} and target in identifier.nb_classes
    total = in_target = 0
    for sentence_text in _SENTENCE_END.split(text):
        sentence = split_words(sentence_text)
        total += len(sentence)
        in_target += sum(word.script in scripts for word in sentence)
        if use_langid:
            in_target -= _off_target_latin(sentence, target, identifier)
    return in_target / total if total else 0.0


def make_language_consistency(identifier: str = "auto") -> Callable[[str, Reference], float]:
    """A language-consistency reward. identifier: "auto" (langid when installed, else scripts), "script"
    (Unicode scripts only, the same everywhere) or "langid" (ImportError when langid is missing)."""
    if identifier not in ("auto", "script", "langid"):
        raise ValueError(f"identifier must be 'auto', 'script' or 'langid', got {identifier!r}")
    if identifier == "langid" and _langid_identifier() is None:
        raise ImportError("identifier='langid' needs the langid package: pip install langid")

    def language_consistency(completion: str, ref: Reference) -> float:
        """Share of CoT words in the target language `ref.meta.get("language", "en")` (R1 section 2.3.2);
        an empty or wordless CoT scores 0."""
        found = None if identifier == "script" else _langid_identifier()
        return target_share(chain_of_thought(completion), ref.meta.get("language", "en"), found)

    return language_consistency


language_consistency = register_reward("language_consistency")(make_language_consistency("auto"))
