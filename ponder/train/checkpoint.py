"""Checkpoints a run can resume from: `checkpoints/step-N/` holds a Hugging Face model directory
(loadable by `AutoModelForCausalLM.from_pretrained`) plus `trainer_state.pt` (optimizer, scheduler, RNG)
and `state.json` (step, data position). Written to a temporary folder and renamed, so a crash mid-save
never leaves a half checkpoint that `latest()` would pick.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

from ponder.model import save_checkpoint

STATE_FILE = "state.json"
TRAINER_FILE = "trainer_state.pt"
REFERENCE_FILE = "reference.safetensors"  # only when the KL reference is not the starting model


@dataclass
class Resumable:
    """What a loop needs beyond the weights to continue exactly: step, data position, optimizer, RNG."""

    step: int
    data_position: int
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any]


def rng_state() -> dict[str, Any]:
    """The state of every random generator the loop touches."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state()` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(run_dir: Path, model, tokenizer, state: Resumable, keep: int, reference=None) -> Path:
    """Write `checkpoints/step-N/` atomically and delete all but the newest `keep` checkpoints.

    `reference`: a KL reference model whose weights are not recoverable from the run's config (it was reset
    to the policy during training); it is stored beside the policy so a resume is exact.
    """
    root = Path(run_dir) / "checkpoints"
    final = root / f"step-{state.step}"
    tmp = root / f".tmp-step-{state.step}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(model, tokenizer, tmp)  # the HF directory, as every ponder checkpoint writes it
    if reference is not None:
        safetensors.torch.save_model(reference, str(tmp / REFERENCE_FILE))
    torch.save(
        {"optimizer": state.optimizer, "scheduler": state.scheduler, "rng": state.rng},
        tmp / TRAINER_FILE,
    )
    (tmp / STATE_FILE).write_text(json.dumps({"step": state.step, "data_position": state.data_position}))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old)
    return final


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    found = [p for p in root.glob("step-*") if (p / STATE_FILE).exists()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def latest(run_dir: Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    found = checkpoints(run_dir)
    return found[-1] if found else None


def load_reference(path: Path, model) -> bool:
    """Load a stored KL reference into `model`; False when the checkpoint holds none."""
    file = Path(path) / REFERENCE_FILE
    if not file.exists():
        return False
    safetensors.torch.load_model(model, str(file))
    return True


def load(path: Path) -> Resumable:
    """Read the trainer state of a checkpoint directory (the weights load through `model.load`)."""
    meta = json.loads((Path(path) / STATE_FILE).read_text())
    blob = torch.load(Path(path) / TRAINER_FILE, weights_only=False)
    return Resumable(
        step=meta["step"],
        data_position=meta["data_position"],
        optimizer=blob["optimizer"],
        scheduler=blob["scheduler"],
        rng=blob["rng"],
    )
