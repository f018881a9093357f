"""How the device runs its blocks [start, stop), and what that costs.

The device has two executors for float blocks: numpy (always there) and onnxruntime-web
(once loaded). A call into onnxruntime-web has a fixed cost, about as large as a whole
small block's compute, so consecutive blocks there run as one joined graph in one call.
The device's route is therefore numpy for a first stretch [start, j), then
onnxruntime-web for [j, stop) in one session; running numpy after onnxruntime-web never
pays (numpy's float blocks are several times slower).

Block times are measured one block per session, so each onnxruntime-web time holds one
fixed cost. `session_ms` is that cost, learned from joined sessions timed against the
sum of their blocks (see ContextTracker.on_session); 0 until then, which overestimates
a joined run and never underestimates it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

NUMPY, ORT = "numpy", "ort"


@dataclass(frozen=True)
class Segment:
    executor: str  # NUMPY or ORT
    start: int
    stop: int


def best_route(times: Sequence[Mapping[str, float]], start: int, stop: int,
               session_ms: float = 0.0) -> tuple[float, list[Segment]]:
    """The fastest route over blocks [start, stop): (ms, segments); (inf, []) if some block
    has no time in any executor that the route could use. `times[k]` maps an executor to
    block k's time measured alone (an onnxruntime-web time includes one fixed cost)."""
    if start >= stop:
        return 0.0, []
    best = (math.inf, [])
    numpy_ms = 0.0
    for j in range(start, stop + 1):  # numpy for [start, j), onnxruntime-web for [j, stop)
        joined = _joined_ms(times, j, stop, session_ms)
        if numpy_ms + joined < best[0]:
            segments = [Segment(NUMPY, start, j)] if j > start else []
            best = (numpy_ms + joined, segments + ([Segment(ORT, j, stop)] if j < stop else []))
        if j < stop:
            numpy_ms += times[j].get(NUMPY, math.inf)
    return best


def run_times(times: Sequence[Mapping[str, float]], start: int, session_ms: float = 0.0) -> list[float]:
    """best_route's time over [start, stop) for every stop from start to len(times), in
    one O(N^2) pass (the planner asks for all of them at every re-plan)."""
    n = len(times)
    best = [math.inf] * (n - start + 1)
    numpy_ms = 0.0
    for j in range(start, n + 1):  # numpy for [start, j), then onnxruntime-web for [j, stop)
        if math.isinf(numpy_ms):
            break
        best[j - start] = min(best[j - start], numpy_ms)
        joined = 0.0
        for stop in range(j + 1, n + 1):
            joined += times[stop - 1].get(ORT, math.inf)
            if math.isinf(joined):
                break
            best[stop - start] = min(best[stop - start], numpy_ms + joined - (stop - j - 1) * session_ms)
        if j < n:
            numpy_ms += times[j].get(NUMPY, math.inf)
    return best


def _joined_ms(times: Sequence[Mapping[str, float]], start: int, stop: int, session_ms: float) -> float:
    """Blocks [start, stop) in one onnxruntime-web session: one fixed cost, plus each
    block's time without its own."""
    if start == stop:
        return 0.0
    alone = [times[k].get(ORT, math.inf) for k in range(start, stop)]
    return sum(alone) - (len(alone) - 1) * session_ms


def session_cost(alone_ms: Sequence[float], joined_ms: float) -> float:
    """The fixed cost of one onnxruntime-web call, from blocks timed alone and the same
    blocks timed joined: each alone time holds one, the joined time one in all. Kept
    below the smallest block, so no block's own share goes negative."""
    if len(alone_ms) < 2:
        raise ValueError("a session cost needs at least two blocks timed alone and joined")
    estimate = (sum(alone_ms) - joined_ms) / (len(alone_ms) - 1)
    return max(-min(alone_ms), min(estimate, 0.9 * min(alone_ms)))
