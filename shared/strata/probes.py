"""Estimators for what the worker measures about its context: RTT, bandwidth, device speed.

They are pure bookkeeping with no clock and no I/O, so the worker feeds them from real
ping/pong exchanges and offloads, and the tests feed them numbers.
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

    def reset(self, samples: list[float]) -> None:
        self._samples.clear()
        self._samples.extend(samples)

    @property
    def count(self) -> int:
        return len(self._samples)

    @property
    def value(self) -> float | None:
        """The current estimate, or None before the first sample."""
        return median(self._samples) if self._samples else None


class StepTracker:
    """A windowed median that jumps to a new level as soon as the level clearly changes.

    A plain median over 16 samples needs 8 samples to follow a step in bandwidth. Here,
    when the last `confirm` samples all lie more than `ratio` away from the estimate on
    the same side, the window restarts from those samples: a step is followed after
    `confirm` samples (a few seconds at one probe a second), while single outliers
    still cannot move the estimate.
    """

    def __init__(self, window: int = 16, confirm: int = 3, ratio: float = 1.5) -> None:
        if confirm < 1 or ratio <= 1:
            raise ValueError(f"need confirm >= 1 and ratio > 1, got {confirm} and {ratio}")
        self._median = WindowedMedian(window)
        self._recent: deque[float] = deque(maxlen=confirm)
        self.ratio = ratio
        self.changes = 0  # how many steps were detected; for display and tests

    def add(self, sample: float) -> None:
        self._recent.append(float(sample))
        current = self._median.value
        self._median.add(sample)
        if current is None or len(self._recent) < self._recent.maxlen:
            return
        if all(s > current * self.ratio for s in self._recent) or all(s < current / self.ratio for s in self._recent):
            self._median.reset(list(self._recent))
            self.changes += 1

    @property
    def value(self) -> float | None:
        return self._median.value


def transfer_rate_bps(size_bytes: int, seconds: float, rtt_s: float) -> float | None:
    """Throughput of a timed transfer: bytes over the time beyond one round trip.

    When the transfer took hardly longer than the round trip (a fast link, say loopback),
    the time it took cannot be told from noise: the result is then a lower bound, the
    rate at which the bytes would have taken a tenth of the RTT. None for no bytes.
    """
    if size_bytes <= 0:
        return None
    busy = max(seconds - rtt_s, 0.1 * max(rtt_s, 1e-4))
    return size_bytes * 8 / busy


PROBE_CEILING = 1 << 20  # the largest probe, bytes


def probe_bytes(rate_bps: float | None, period_s: float, share: float = 0.05,
                floor: int = 4096, ceiling: int = PROBE_CEILING) -> int:
    """Size of the next bandwidth probe, so probing costs at most `share` of the link.

    With one probe every `period_s`, a probe of share * rate * period / 8 bytes keeps the
    probe traffic at `share` of the estimated capacity. Before any estimate, the floor; never
    more than the ceiling.
    """
    if rate_bps is None:
        return min(floor, ceiling)
    return int(min(max(share * rate_bps * period_s / 8, floor), ceiling))
