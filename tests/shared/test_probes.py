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
