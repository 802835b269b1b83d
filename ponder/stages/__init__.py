"""Training stages; each composes model, rollout, rewards, algos and train parts.

Stages never import each other.
"""
