"""Evaluation of a policy on held-out task items (the fuller R1-style suite builds on this)."""

from ponder.evaluate.accuracy import evaluate_items

__all__ = ["evaluate_items"]
