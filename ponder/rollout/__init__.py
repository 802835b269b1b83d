"""Generation behind one small interface: the trainer asks a `Generator` for completions of token prompts."""

from ponder.rollout.base import Completion, Generator
from ponder.rollout.hf import HFGenerator

__all__ = ["Completion", "Generator", "HFGenerator"]
