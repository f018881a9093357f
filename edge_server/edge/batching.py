"""Dynamic batching: concurrent requests for the same blocks share one call.

onnxruntime runs a batch of 16 in far less than 16 times the time of one, and one HTTP
request to the cloud for 16 samples costs far less than 16 requests. At most `workers`
calls run at once. Whenever one may start, it takes the oldest waiting range and up to
`max_batch` of its samples, so a lone request never waits for company, and under load
requests that queued behind a busy worker go together: the wait is bounded by one call.
`max_wait_s` > 0 additionally holds a lone request that long, hoping for company.
max_batch=1 turns batching off and keeps everything else: the benchmark's baseline.

The edge uses two: one over its onnxruntime sessions, one over its cloud forwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

# (batch, *key) -> (output, details about the call, e.g. the cloud's own compute time); the
# key says what to run: (start, stop) of a block range, and the model variant at the edge.
Compute = Callable[..., Awaitable[tuple[np.ndarray, dict]]]


@dataclass(frozen=True)
class Computed:
    output: np.ndarray
    call_ms: float  # wall time of the call this request was part of
    batch: int  # samples in that call
    details: dict = field(default_factory=dict)
    waited_ms: float = 0.0  # from arrival to the start of that call


@dataclass
class _Waiting:
    x: np.ndarray
    future: asyncio.Future
    arrived: float


class Batcher:
    def __init__(self, compute: Compute, workers: int = 2, max_batch: int = 32, max_wait_s: float = 0.0,
                 on_call: Callable[[int], None] | None = None) -> None:
        """on_call: told the samples of each call as it starts (the batch-size metric)."""
        if workers < 1 or max_batch < 1 or max_wait_s < 0:
            raise ValueError(f"need workers >= 1, max_batch >= 1 and max_wait_s >= 0, "
                             f"got {workers}, {max_batch} and {max_wait_s}")
        self.compute, self.workers = compute, workers
        self.max_batch, self.max_wait_s, self.on_call = max_batch, max_wait_s, on_call
        self._waiting: dict[tuple, list[_Waiting]] = {}  # keys in order of their oldest request
        self._running = 0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def queued(self) -> int:
        """Samples waiting for a worker: the load, as the planner sees it."""
        return sum(len(w.x) for waiting in self._waiting.values() for w in waiting)

    async def __call__(self, x: np.ndarray, *key: object) -> Computed:
        """Run `key` (e.g. blocks start, stop) on x, batched with whatever else waits for it."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(_Waiting(x, future, time.perf_counter()))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        self._timer = None
        while self._running < self.workers and self._waiting:
            key, waiting = next(iter(self._waiting.items()))
            hold = self.max_wait_s - (time.perf_counter() - waiting[0].arrived)
            if hold > 0 and sum(len(w.x) for w in waiting) < self.max_batch:
                if self._timer is None:
                    self._timer = asyncio.get_running_loop().call_later(hold, self._dispatch)
                return
            taken, samples = [], 0
            while waiting and (not taken or samples + len(waiting[0].x) <= self.max_batch):
                taken.append(waiting.pop(0))
                samples += len(taken[-1].x)
            if not waiting:
                del self._waiting[key]
            if self.on_call is not None:
                self.on_call(samples)
            self._running += 1
            asyncio.ensure_future(self._run(taken, key))

    async def _run(self, taken: list[_Waiting], key: tuple) -> None:
        began = time.perf_counter()
        try:
            x = taken[0].x if len(taken) == 1 else np.concatenate([w.x for w in taken])
            output, details = await self.compute(x, *key)
        except Exception as exc:  # every waiter learns of the failure; none hangs
            for w in taken:
                if not w.future.done():
                    w.future.set_exception(exc)
            return
        finally:
            self._running -= 1
            self._dispatch()
        call_ms = (time.perf_counter() - began) * 1000
        offset = 0
        for w in taken:
            if not w.future.done():
                w.future.set_result(Computed(output[offset:offset + len(w.x)], call_ms, len(x), details,
                                             (began - w.arrived) * 1000))
            offset += len(w.x)


def in_threads(run: Callable[..., np.ndarray], workers: int) -> tuple[Compute, ThreadPoolExecutor]:
    """Wrap a blocking runner (onnxruntime releases the GIL) as a Compute on a pool.

    Its details give `run_ms`, the time inside the runner, apart from any wait for a thread.
    """
    pool = ThreadPoolExecutor(workers, thread_name_prefix="edge-blocks")

    def timed(x: np.ndarray, *key: object) -> tuple[np.ndarray, dict]:
        begin = time.perf_counter()
        output = run(x, *key)
        return output, {"run_ms": (time.perf_counter() - begin) * 1000}

    async def compute(x: np.ndarray, *key: object) -> tuple[np.ndarray, dict]:
        return await asyncio.get_running_loop().run_in_executor(pool, timed, x, *key)

    return compute, pool
