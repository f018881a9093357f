"""Context estimators. Runs in CPython (pytest) and inside Pyodide (tests/test_in_pyodide.py)."""

import pytest

from strata.probes import WindowedMedian


def test_windowed_median_ignores_a_single_outlier():
    estimate = WindowedMedian(window=5)
    for sample in [1.0, 1.2, 50.0, 1.1, 0.9]:
        estimate.add(sample)
    assert estimate.value == 1.1
    assert estimate.count == 5


def test_windowed_median_forgets_old_samples():
    estimate = WindowedMedian(window=3)
    for sample in [100.0, 100.0, 100.0, 2.0, 2.0]:
        estimate.add(sample)
    assert estimate.value == 2.0


def test_windowed_median_is_empty_before_samples():
    assert WindowedMedian().value is None
    with pytest.raises(ValueError, match="window must be at least 1"):
        WindowedMedian(window=0)


def test_step_tracker_follows_a_step_within_confirm_samples():
    from strata.probes import StepTracker

    tracker = StepTracker(window=16, confirm=3)
    for _ in range(20):
        tracker.add(50e6)
    for i in range(3):
        tracker.add(1.5e6 * (1 + 0.05 * (-1) ** i))
    assert abs(tracker.value - 1.5e6) / 1.5e6 < 0.06
    assert tracker.changes == 1


def test_step_tracker_ignores_outliers():
    from strata.probes import StepTracker

    tracker = StepTracker(window=16, confirm=3)
    for i in range(30):
        tracker.add(0.1 if i % 7 == 0 else 20.0)
    assert tracker.value == 20.0 and tracker.changes == 0


def test_transfer_rate_subtracts_the_round_trip():
    from strata.probes import transfer_rate_bps

    assert transfer_rate_bps(125_000, 0.11, 0.01) == 10e6
    assert transfer_rate_bps(1000, 0.0101, 0.01) == 8e6  # too quick to time: a lower bound
    assert transfer_rate_bps(0, 1.0, 0.01) is None


def test_probe_size_keeps_probing_under_five_percent():
    from strata.probes import probe_bytes

    assert probe_bytes(None, 1.0) == 4096
    assert probe_bytes(10e6, 1.0) == 62_500  # 5 % of 10 Mbit/s over one second
    assert probe_bytes(10e6, 1.0) * 8 <= 0.05 * 10e6
    assert probe_bytes(1e12, 1.0) == 1 << 20
