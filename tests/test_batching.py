"""Dynamic batching groups concurrent requests per block range and answers each alone."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from edge_server.edge.batching import Batcher, in_threads


def make(run, workers: int, max_batch: int) -> Batcher:
    compute, _ = in_threads(run, workers)
    return Batcher(compute, workers, max_batch)


class Recorder:
    """A fake model call that records its batches and can be held until released."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, x: np.ndarray, start: int, stop: int) -> np.ndarray:
        self.gate.wait(5)
        self.calls.append((len(x), start, stop))
        return x * 10 + start


def test_a_lone_request_runs_at_once() -> None:
    model = Recorder()

    async def main():
        batching = make(model, workers=1, max_batch=64)
        return await asyncio.wait_for(batching(np.ones((1, 2), np.float32), 2, 4), timeout=5)

    result = asyncio.run(main())
    assert model.calls == [(1, 2, 4)] and result.batch == 1
    assert np.array_equal(result.output, np.full((1, 2), 12.0))


def test_requests_queued_behind_a_busy_worker_share_one_call() -> None:
    model = Recorder()

    async def main():
        batching = make(model, workers=1, max_batch=64)
        model.gate.clear()  # the first call blocks the only worker
        first = asyncio.ensure_future(batching(np.zeros((1, 2), np.float32), 1, 3))
        await asyncio.sleep(0.05)
        inputs = [np.full((1, 2), i, np.float32) for i in range(10)]
        rest = asyncio.gather(*(batching(x, 1, 3) for x in inputs))
        await asyncio.sleep(0.05)
        assert batching.queued == 10
        model.gate.set()
        return inputs, await asyncio.wait_for(rest, 5), await first

    inputs, results, _ = asyncio.run(main())
    assert model.calls == [(1, 1, 3), (10, 1, 3)]
    for x, result in zip(inputs, results):
        assert np.array_equal(result.output, x * 10 + 1) and result.batch == 10


def test_ranges_are_never_mixed_and_groups_are_capped() -> None:
    model = Recorder()

    async def main():
        batching = make(model, workers=1, max_batch=4)
        model.gate.clear()
        blocker = asyncio.ensure_future(batching(np.zeros((1, 2), np.float32), 9, 9))
        await asyncio.sleep(0.05)
        jobs = [batching(np.zeros((1, 2), np.float32), k % 2, 5) for k in range(8)]
        gathered = asyncio.gather(*jobs)
        await asyncio.sleep(0.05)
        model.gate.set()
        await blocker
        return await asyncio.wait_for(gathered, 5)

    results = asyncio.run(main())
    assert sorted(model.calls[1:]) == [(4, 0, 5), (4, 1, 5)]
    assert [float(r.output[0, 0]) for r in results] == [0.0, 1.0] * 4


def test_without_batching_each_request_runs_alone() -> None:
    model = Recorder()

    async def main():
        batching = make(model, workers=2, max_batch=1)
        await asyncio.gather(*(batching(np.zeros((1, 2), np.float32), 0, 2) for _ in range(5)))

    asyncio.run(main())
    assert model.calls == [(1, 0, 2)] * 5


def test_a_failing_model_call_fails_every_waiter_and_frees_the_worker() -> None:
    def broken(x, start, stop):
        raise RuntimeError("model exploded")

    async def main():
        batching = make(broken, workers=1, max_batch=8)
        first = await asyncio.gather(*(batching(np.zeros((1, 1), np.float32), 0, 1) for _ in range(3)),
                                     return_exceptions=True)
        again = await asyncio.gather(batching(np.zeros((1, 1), np.float32), 0, 1), return_exceptions=True)
        return first + again

    results = asyncio.run(main())
    assert len(results) == 4 and all(isinstance(r, RuntimeError) for r in results)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        make(lambda x, a, b: x, workers=1, max_batch=0)


def test_max_wait_holds_a_lone_request_for_company() -> None:
    model = Recorder()

    async def main():
        batching = Batcher(in_threads(model, 2)[0], workers=2, max_batch=8, max_wait_s=0.2)
        jobs = []
        for i in range(3):
            jobs.append(asyncio.ensure_future(batching(np.full((1, 1), i, np.float32), 0, 1)))
            await asyncio.sleep(0.01)
        return await asyncio.wait_for(asyncio.gather(*jobs), 5)

    results = asyncio.run(main())
    assert model.calls == [(3, 0, 1)]
    assert results[0].waited_ms >= 150
