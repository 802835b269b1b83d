"""Preference pairs for reward models: JSONL rows of chosen / rejected texts (with a prompt column, or whole
HH-RLHF dialogues split at the last assistant marker), checked line by line, and a seeded held-out split.
The reward-model stage (`ponder/stages/reward_model.py`) reads its data through here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch


class PairSource(Protocol):
    """Where pairs come from and how rows are read (the reward-model stage's config has these fields)."""

    data: str
    eval_data: str
    eval_fraction: float
    max_pairs: int
    max_eval_pairs: int
    seed: int
    chosen_field: str
    rejected_field: str
    prompt_field: str
    human_marker: str
    assistant_marker: str


class PreferenceDataError(ValueError):
    """A preference file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Pair:
    """One preference: (prompt, response) of the chosen and of the rejected side, and where it was read."""

    chosen: tuple[str, str]
    rejected: tuple[str, str]
    where: str  # "file:line"


def read_pairs(path: str | Path, cfg: PairSource) -> list[Pair]:
    """Every pair of a JSONL file; bad lines raise PreferenceDataError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise PreferenceDataError(f"{path}: no such file")
    pairs = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                pairs.append(_parse_pair(line, f"{path}:{number}", cfg))
    if not pairs:
        raise PreferenceDataError(f"{path}: no preference pairs in the file")
    return pairs


def _parse_pair(line: str, where: str, cfg: PairSource) -> Pair:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise PreferenceDataError(f"{where}: invalid JSON ({err.msg}, column {err.colno})") from None
    if not isinstance(row, dict):
        raise PreferenceDataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for name in (cfg.chosen_field, cfg.rejected_field, cfg.prompt_field):
        if name and name not in row:
            raise PreferenceDataError(f"{where}: missing field {name!r} (the line has {sorted(row)})")
        if name and not isinstance(row[name], str):
            raise PreferenceDataError(f"{where}: field {name!r} is {type(row[name]).__name__}, not a string")
    chosen, rejected = row[cfg.chosen_field], row[cfg.rejected_field]
    if chosen == rejected:
        raise PreferenceDataError(
            f"{where}: {cfg.chosen_field!r} equals {cfg.rejected_field!r}; the pair states no preference"
        )
    if cfg.prompt_field:
        prompt = row[cfg.prompt_field]
        return Pair((prompt, chosen), (prompt, rejected), where)
    split = [
        _split_dialogue(text, name, where, cfg) for text, name in ((chosen, "chosen"), (rejected, "rejected"))
    ]
    return Pair(split[0], split[1], where)


def _split_dialogue(text: str, name: str, where: str, cfg: PairSource) -> tuple[str, str]:
    """(prompt, response) of an HH-RLHF dialogue: the response follows the last assistant marker."""
    if not cfg.assistant_marker:
        return "", text
    cut = text.rfind(cfg.assistant_marker)
    if cut < 0:
        raise PreferenceDataError(
            f"{where}: {name} text has no assistant marker {cfg.assistant_marker!r}; set "
            f'reward_model.prompt_field if the file has a prompt column, or assistant_marker = ""'
        )
    prompt = text[:cut].strip().removeprefix(cfg.human_marker.strip()).strip()
    return prompt, text[cut + len(cfg.assistant_marker) :].strip()


def split_pairs(cfg: PairSource) -> tuple[list[Pair], list[Pair]]:
    """(train, held-out) pairs: `eval_data`, or a seeded `eval_fraction` of `data`; then the size caps."""
    pairs = read_pairs(cfg.data, cfg)
    if cfg.eval_data:
        train, held_out = pairs, read_pairs(cfg.eval_data, cfg)
    else:
        order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
        n_eval = round(cfg.eval_fraction * len(pairs))
        held_out = [pairs[i] for i in order[:n_eval]]
        train = [pairs[i] for i in order[n_eval:]]
    if not train:
        raise PreferenceDataError(f"{cfg.data}: no pairs left for training after holding out {len(held_out)}")
    return train[: cfg.max_pairs or None], held_out[: cfg.max_eval_pairs or None]
