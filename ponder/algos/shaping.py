"""Reward shaping that depends on token counts rather than text (so it lives beside the algorithms)."""

from __future__ import annotations


def overlong_penalty(length: int, max_len: int, buffer: int, scale: float = 1.0) -> float:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13), a value in [-scale, 0].

        R(y) = 0                              if |y| <= L_max - L_cache
             = ((L_max - L_cache) - |y|) / L_cache   if L_max - L_cache < |y| <= L_max
             = -1                             if |y| > L_max

    with L_max = `max_len` and L_cache = `buffer`; the result is multiplied by `scale`.
    """
    if buffer <= 0:
        return -scale if length >= max_len else 0.0
    start = max_len - buffer
    if length <= start:
        return 0.0
    if length > max_len:
        return -scale
    return scale * (start - length) / buffer
