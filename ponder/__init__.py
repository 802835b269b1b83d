"""ponder: teach language models to reason with reinforcement learning (DeepSeek-R1, end to end)."""

__version__ = "0.1.0"
