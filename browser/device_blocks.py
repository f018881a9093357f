"""The device's float main-path blocks, in numpy and onnxruntime-web, run along a route.

numpy runs blocks [first, N): 1 after the browser bundle's conv1, and none at all for a
model made by `strata split` (it has no op lists). onnxruntime-web, once loaded, runs
any block from 0. The context tracker picks the route (strata.device_route): numpy for
a first stretch, then onnxruntime-web for the rest in one call, as one graph the edge
joined (edge_server/edge/joined.py).

Nothing here runs at start-up. A block's ONNX file is fetched the first time a plan
needs it on the device (or onnxruntime-web is worth timing), checked against the
manifest's sha256, timed, and kept; a joined graph is fetched the first time a route
names its range, checked the same way, timed, and used from then on. Every time goes to
the context tracker: blocks alone (`report`), joined runs, real requests' included
(`report_session`), so the planner learns what a call into onnxruntime-web costs.
"""

import asyncio
import hashlib
import time

import numpy as np
from ort_web import OrtWeb, to_numpy
from strata.blocks import load_blocks
from strata.device_route import NUMPY, ORT

ORT_WARM_UP_PASSES = 3
JOINED_DIGESTS_HEADER = "x-strata-block-sha256"  # edge_server/edge/joined.py


async def timed_ms(work, window_ms=20.0, least=3):
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
    def __init__(self, manifest, variant, base_url, first, fetch, ort_assets, report, report_session):
        self.manifest, self.variant, self.base_url = manifest, variant, base_url  # "/models/" or a variant's
        self.first = first
        self.fetch = fetch  # async url -> (bytes, headers)
        self.ort_assets = ort_assets  # assets.json's "ort" entry
        self.report = report  # (block, ms, executor): a block timed alone
        self.report_session = report_session  # (start, stop, ms): blocks [start, stop) in one call
        self.count = len(manifest["blocks"])
        self.numpy_ok = all(block.get("ops") for block in manifest["blocks"][first:])
        self.files = {}  # block -> verified ONNX bytes
        self.numpy = {}  # block -> strata.blocks.FloatBlock
        self.ort_blocks = {}  # block -> ort_web.OrtBlock
        self.joined = {}  # (start, stop) -> ort_web.OrtBlock of the joined graph
        self.join_errors = {}  # (start, stop) -> why it could not be joined (not retried)
        self._joining = {}  # (start, stop) -> Task
        self.ort = None
        self.ort_error = None
        self._ort_task = None

    def _expected(self, start, stop):
        return [self.manifest.get("artifacts", {}).get(block["file"]) for block in self.manifest["blocks"][start:stop]]

    async def _file(self, k):
        if k not in self.files:
            block = self.manifest["blocks"][k]
            url = self.base_url + block["file"]
            data, _ = await self.fetch(url)
            [expected] = self._expected(k, k + 1)
            if expected and hashlib.sha256(data).hexdigest() != expected:
                raise ValueError(f"{url} does not match the manifest's sha256; reload the page "
                                 "(the server's models/ may have changed)")
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
    def ort_requested(self):
        return self._ort_task is not None

    async def load_ort(self):
        """Import onnxruntime-web and time every block in it and every float block in
        numpy; once (later calls wait)."""
        if self._ort_task is None:
            self._ort_task = asyncio.ensure_future(self._load_ort())
        await self._ort_task

    async def _load_ort(self):
        try:
            ort = await OrtWeb.load(self.ort_assets["base_url"], self.ort_assets["module"])
            blocks = {k: await ort.block(await self._file(k)) for k in range(self.count)}
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
        except Exception as exc:  # a failed import or session: numpy stays, and the page says why
            self.ort, self.ort_error = None, f"{type(exc).__name__}: {exc}"

    def join(self, start, stop):
        """Fetch, check and time blocks [start, stop) joined into one graph, in the
        background; runs use it once it is ready. Once per range."""
        key = (start, stop)
        if self.ort is None or stop - start < 2 or key in self._joining:
            return
        self._joining[key] = asyncio.ensure_future(self._join(start, stop))

    def joined_for(self, segments):
        """Whether each onnxruntime-web segment of two blocks or more has its joined graph
        (or failed to get one, for good): until then, runs take one call per block."""
        return all((s.start, s.stop) in self.joined or (s.start, s.stop) in self.join_errors
                   for s in segments if s.executor == ORT and s.stop - s.start >= 2)

    async def _join(self, start, stop):
        url = f"/joined/{start}-{stop}.onnx" + (f"?variant={self.variant}" if self.variant else "")
        try:
            data, headers = await self.fetch(url)
            if headers.get(JOINED_DIGESTS_HEADER, "").split(",") != self._expected(start, stop):
                raise ValueError(f"{url} joins other block files than this page's manifest names; reload the page")
            session = await self.ort.block(data)
            x = self._input(start)
            for _ in range(ORT_WARM_UP_PASSES):
                await session(x)
            self.report_session(start, stop, await timed_ms(lambda: session(x)))
            self.joined[(start, stop)] = session
        except Exception as exc:  # the blocks one call each still run
            self.join_errors[(start, stop)] = f"{type(exc).__name__}: {exc}"

    async def run(self, x, segments):
        """The blocks of `segments` (strata.device_route.Segment, in order) on x. A
        numpy segment this device cannot run in numpy, and an onnxruntime-web one while
        it is not loaded, run in the other executor."""
        for segment in segments:
            if segment.executor == ORT and self.ort is not None or not self.numpy_ok:
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
            raise RuntimeError(f"blocks [{start}, {stop}) need onnxruntime-web, which did not load: {self.ort_error}")
        begin = time.perf_counter()
        session = self.joined.get((start, stop))
        if session is not None:
            x = await session(x)
            self.report_session(start, stop, (time.perf_counter() - begin) * 1000)
            return x
        self.join(start, stop)
        held = self.ort_blocks[start].tensor(x)  # between blocks, the tensor stays in JS
        for k in range(start, stop):
            given, held = held, await self.ort_blocks[k].run_tensor(held)
            given.dispose()
        return to_numpy(held)
