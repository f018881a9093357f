"""How the device routes its blocks between numpy and onnxruntime-web. CPython and Pyodide."""

import math

import pytest

from strata.device_route import NUMPY, ORT, Segment, best_route, run_times, session_cost


def test_numpy_alone_until_onnxruntime_web_is_timed():
    assert best_route([{NUMPY: 1.0}, {NUMPY: 2.0}], 0, 2) == (3.0, [Segment(NUMPY, 0, 2)])


def test_one_call_joins_the_blocks_and_pays_the_fixed_cost_once():
    times = [{NUMPY: 1.0, ORT: 0.5}, {NUMPY: 8.0, ORT: 0.6}, {NUMPY: 9.0, ORT: 0.7}]
    ms, route = best_route(times, 0, 3, session_ms=0.4)
    assert route == [Segment(ORT, 0, 3)] and abs(ms - (1.8 - 2 * 0.4)) < 1e-9


def test_a_cheap_numpy_start_stays_in_numpy():
    times = [{NUMPY: 0.1, ORT: 0.5}, {NUMPY: 8.0, ORT: 0.6}]
    assert best_route(times, 0, 2, session_ms=0.1) == (0.7, [Segment(NUMPY, 0, 1), Segment(ORT, 1, 2)])


def test_a_block_no_executor_can_run_makes_the_route_impossible():
    assert best_route([{ORT: 1.0}, {}], 0, 2) == (math.inf, [])
    assert best_route([{ORT: 1.0}], 1, 1) == (0.0, [])


def test_session_cost_from_blocks_alone_and_joined():
    assert abs(session_cost([1.0, 1.0, 1.0], 2.2) - 0.4) < 1e-9
    assert abs(session_cost([1.0, 0.2], 0.1) - 0.18) < 1e-9  # capped below the smallest block
    assert session_cost([1.0, 1.0], 5.0) == -1.0  # joined slower than apart: a negative cost, bounded
    with pytest.raises(ValueError, match="at least two blocks"):
        session_cost([1.0], 0.5)


def test_run_times_are_best_route_for_every_stop():
    times = [{NUMPY: 0.2, ORT: 0.5}, {NUMPY: 8.0, ORT: 0.6}, {NUMPY: 0.1, ORT: 0.7}, {ORT: 0.9}, {NUMPY: 1.0}]
    for start in (0, 1):
        for session in (0.0, 0.3, -0.1):
            expected = [best_route(times, start, stop, session)[0] for stop in range(start, len(times) + 1)]
            got = run_times(times, start, session)
            assert len(got) == len(expected)
            assert all(g == e or abs(g - e) < 1e-9 for g, e in zip(got, expected)), (start, session, got, expected)
