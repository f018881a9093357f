"""Estimators for what the worker measures about its context (RTT for now).

They are pure bookkeeping with no clock and no I/O, so the worker feeds them from real
ping/pong exchanges and the tests feed them numbers.
"""

from __future__ import annotations

from collections import deque
from statistics import median


class WindowedMedian:
    """Median of the last `window` samples: robust to the odd slow round trip."""

    def __init__(self, window: int = 16) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self._samples: deque[float] = deque(maxlen=window)

    def add(self, sample: float) -> None:
        self._samples.append(float(sample))

    @property
    def count(self) -> int:
        return len(self._samples)

    @property
    def value(self) -> float | None:
        """The current estimate, or None before the first sample."""
        return median(self._samples) if self._samples else None
