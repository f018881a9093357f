"""The device's float main-path blocks, in numpy and in the fast float executor, along a route.

numpy runs blocks [first, N): 1 after the browser bundle's conv1, and none at all for a
model made by `strata split` (it has no op lists). The fast float executor ("ort" in
plans: onnxruntime-web in the browser, onnxruntime in CPython, supplied by the
transport) runs any block from 0 once loaded. The context tracker picks the route
(strata.device_route): numpy for a first stretch, then the fast executor for the rest
in one call, as one graph the edge joined (edge_server/edge/joined.py).

Nothing here runs at start-up. A block's ONNX file is fetched the first time a plan
needs it on the device (or the fast executor is worth timing), checked against the
manifest's sha256, timed, and kept; a joined graph is fetched the first time a route
names its range, checked the same way, timed, and used from then on. Every time goes to
the context tracker: blocks alone (`report`), joined runs, real requests' included
(`report_session`), so the planner learns what one call into the fast executor costs.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable

import numpy as np

from strata.blocks import load_blocks
from strata.client.transport import FloatExecutor, FloatSession
from strata.device_route import NUMPY, ORT, Segment

ORT_WARM_UP_PASSES = 3
JOINED_DIGESTS_HEADER = "x-strata-block-sha256"  # edge_server/edge/joined.py


async def timed_ms(work: Callable[[], Awaitable[object]], window_ms: float = 20.0, least: int = 3) -> float:
    """Mean wall time of `await work()` over a window of at least `window_ms` (and `least`
    runs), after one warm-up run, in ms. A window rather than single runs: a slowed or
    busy device loses its CPU in slices of a few ms, and a sub-ms run may miss them all."""
    await work()
    runs, begin = 0, time.perf_counter()
    while runs < least or (time.perf_counter() - begin) * 1000 < window_ms:
        await work()
        runs += 1
    return (time.perf_counter() - begin) * 1000 / runs


class DeviceBlocks:
    def __init__(self, manifest: dict, variant: str, base_url: str, first: int,
                 fetch: Callable[[str], Awaitable[tuple[bytes, dict[str, str]]]],
                 load_executor: Callable[[], Awaitable[FloatExecutor]],
                 report: Callable[[int, float, str], None], report_session: Callable[[int, int, float], None]) -> None:
        self.manifest, self.variant, self.base_url = manifest, variant, base_url  # "/models/" or a variant's
        self.first = first
        self.fetch = fetch  # async path -> (body, headers)
        self.load_executor = load_executor  # async () -> the fast float executor
        self.report = report  # (block, ms, executor): a block timed alone
        self.report_session = report_session  # (start, stop, ms): blocks [start, stop) in one call
        self.count = len(manifest["blocks"])
        self.numpy_ok = all(block.get("ops") for block in manifest["blocks"][first:])
        self.files = {}  # block -> verified ONNX bytes
        self.numpy = {}  # block -> strata.blocks.FloatBlock
        self.ort_blocks: dict[int, FloatSession] = {}
        self.joined: dict[tuple[int, int], FloatSession] = {}  # (start, stop) -> the joined graph's session
        self.join_errors: dict[tuple[int, int], str] = {}  # (start, stop) -> why it could not be joined (not retried)
        self._joining: dict[tuple[int, int], asyncio.Future] = {}
        self.ort: FloatExecutor | None = None
        self.ort_error: str | None = None
        self._ort_task: asyncio.Future | None = None

    def _expected(self, start, stop):
        return [self.manifest.get("artifacts", {}).get(block["file"]) for block in self.manifest["blocks"][start:stop]]

    async def _file(self, k):
        if k not in self.files:
            block = self.manifest["blocks"][k]
            url = self.base_url + block["file"]
            data, _ = await self.fetch(url)
            [expected] = self._expected(k, k + 1)
            if expected and hashlib.sha256(data).hexdigest() != expected:
                raise ValueError(f"{url} does not match the manifest's sha256; reload the page or restart "
                                 "the client (the server's models/ may have changed)")
            self.files[k] = data
        return self.files[k]

    def _input(self, k):
        return np.zeros((1, *self.manifest["blocks"][k]["input_shape"]), np.float32)

    async def _load_numpy(self, k):
        [block] = load_blocks(self.manifest, {self.manifest["blocks"][k]["file"]: await self._file(k)}, k, k + 1)
        x = self._input(k)

        async def once():
            block(x)

        self.report(k, await timed_ms(once), NUMPY)
        self.numpy[k] = block

    @property
    def ort_requested(self) -> bool:
        return self._ort_task is not None

    async def load_ort(self) -> None:
        """Load the fast float executor and time every block in it and every float block
        in numpy; once (later calls wait)."""
        if self._ort_task is None:
            self._ort_task = asyncio.ensure_future(self._load_ort())
        await self._ort_task

    async def _load_ort(self):
        try:
            ort = await self.load_executor()
            blocks = {k: await ort.session(await self._file(k)) for k in range(self.count)}
            # The wasm engine optimizes hot code over the first runs: warm every block up
            # before timing any, or the first one looks several times slower than it is.
            for _ in range(ORT_WARM_UP_PASSES):
                for k, block in blocks.items():
                    await block(self._input(k))
            for k, block in blocks.items():
                x = self._input(k)
                self.report(k, await timed_ms(lambda block=block, x=x: block(x)), ORT)
            if self.numpy_ok:  # time numpy too: the planner compares measured times only
                for k in range(self.first, self.count):
                    if k not in self.numpy:
                        await self._load_numpy(k)
            self.ort, self.ort_blocks = ort, blocks
        except Exception as exc:  # a failed import or session: numpy stays, and explain() says why
            self.ort, self.ort_error = None, f"{type(exc).__name__}: {exc}"

    async def retime(self, k: int) -> None:
        """Time block k again in each executor it is loaded in (a few ms): called between
        requests, so that the route follows the device as it is now, not as it was
        while the page was busy loading."""
        x = self._input(k)
        if k in self.numpy:
            block = self.numpy[k]

            async def once():
                block(x)

            self.report(k, await timed_ms(once), NUMPY)
        if k in self.ort_blocks:
            session = self.ort_blocks[k]
            self.report(k, await timed_ms(lambda: session(x)), ORT)

    def join(self, start: int, stop: int) -> None:
        """Fetch, check and time blocks [start, stop) joined into one graph, in the
        background; runs use it once it is ready. Once per range."""
        key = (start, stop)
        if self.ort is None or stop - start < 2 or key in self._joining:
            return
        self._joining[key] = asyncio.ensure_future(self._join(start, stop))

    def joined_for(self, segments: list[Segment]) -> bool:
        """Whether each fast-executor segment of two blocks or more has its joined graph
        (or failed to get one, for good): until then, runs take one call per block."""
        return all((s.start, s.stop) in self.joined or (s.start, s.stop) in self.join_errors
                   for s in segments if s.executor == ORT and s.stop - s.start >= 2)

    async def _join(self, start, stop):
        url = f"/joined/{start}-{stop}.onnx" + (f"?variant={self.variant}" if self.variant else "")
        try:
            data, headers = await self.fetch(url)
            if headers.get(JOINED_DIGESTS_HEADER, "").split(",") != self._expected(start, stop):
                raise ValueError(f"{url} joins other block files than this client's manifest names; reload it")
            session = await self.ort.session(data)
            x = self._input(start)
            for _ in range(ORT_WARM_UP_PASSES):
                await session(x)
            self.report_session(start, stop, await timed_ms(lambda: session(x)))
            self.joined[(start, stop)] = session
        except Exception as exc:  # the blocks one call each still run
            self.join_errors[(start, stop)] = f"{type(exc).__name__}: {exc}"

    def _in_fast_executor(self, segment: Segment) -> bool:
        """Whether run() runs this segment in the fast executor (else in numpy)."""
        return segment.executor == ORT and self.ort is not None or not self.numpy_ok

    def run_ready(self, x: np.ndarray, segments: list[Segment]) -> tuple[np.ndarray, FloatSession | None] | None:
        """What of run() needs no waiting: if every numpy block is loaded and at most the
        last segment runs in the fast executor, in one session that is ready (the joined
        graph, or one block's own), run the numpy segments now and return (their output,
        that session or None). Else run nothing and return None: run() loads what is missing."""
        *leading, last = segments
        if any(self._in_fast_executor(s) for s in leading):
            return None
        session = None
        if self._in_fast_executor(last):
            session = self.ort_blocks.get(last.start) if last.stop - last.start == 1 else self.joined.get(
                (last.start, last.stop))
            if session is None:
                return None
            leading = segments[:-1]
        else:
            leading = segments
        if any(k not in self.numpy for s in leading for k in range(s.start, s.stop)):
            return None
        for segment in leading:
            for k in range(segment.start, segment.stop):
                x = self.numpy[k](x)
        return x, session

    async def run(self, x: np.ndarray, segments: list[Segment]) -> np.ndarray:
        """The blocks of `segments` (in order) on x. A numpy segment this device cannot
        run in numpy, and a fast-executor one while
        it is not loaded, run in the other executor."""
        for segment in segments:
            if self._in_fast_executor(segment):
                x = await self._run_ort(x, segment.start, segment.stop)
            else:
                for k in range(segment.start, segment.stop):
                    if k not in self.numpy:
                        await self._load_numpy(k)
                    x = self.numpy[k](x)
        return x

    async def _run_ort(self, x, start, stop):
        await self.load_ort()
        if self.ort is None:
            raise RuntimeError(f"blocks [{start}, {stop}) need the fast float executor, which did not load: "
                               f"{self.ort_error}")
        begin = time.perf_counter()
        session = self.joined.get((start, stop))
        if session is not None:
            x = await session(x)
            self.report_session(start, stop, (time.perf_counter() - begin) * 1000)
            return x
        self.join(start, stop)
        return await self.ort.run_chain([self.ort_blocks[k] for k in range(start, stop)], x)
