"""The device's float main-path blocks [first, N), in two executors, each in the faster.

`first` is 1 after the browser bundle's conv1, or 0 for a model made by `strata split`.

Nothing here runs at start-up: a block's ONNX file is fetched the first time a plan
needs it on the device (or onnxruntime-web is worth timing), then checked against the
manifest's sha256, timed, and kept. Times go to the context tracker, so the planner
sees the faster executor of each block and the worker runs each block in that one.
"""

import asyncio
import hashlib
import time

import numpy as np
from ort_web import OrtWeb, to_numpy

from strata.blocks import load_blocks

ORT_WARM_UP_PASSES = 3


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
    def __init__(self, manifest, base_url, first, fetch_bytes, ort_assets, report):
        self.manifest, self.base_url, self.first = manifest, base_url, first  # base_url: "/models/" or a variant's
        self.fetch_bytes = fetch_bytes  # async url -> bytes
        self.ort_assets = ort_assets  # assets.json's "ort" entry
        self.report = report  # (block, ms, executor) -> None: the context tracker's on_block
        self.count = len(manifest["blocks"])
        # The numpy executor runs a block from the manifest's op list; a model made by
        # `strata split` has none, and only onnxruntime-web can run it on the device.
        self.numpy_ok = all(block.get("ops") for block in manifest["blocks"][first:])
        self.files = {}  # block -> verified ONNX bytes
        self.numpy = {}  # block -> strata.blocks.FloatBlock
        self.ort_blocks = {}  # block -> ort_web.OrtBlock
        self.ort = None
        self.ort_error = None
        self._ort_task = None

    async def _file(self, k):
        if k not in self.files:
            block = self.manifest["blocks"][k]
            url = self.base_url + block["file"]
            data = await self.fetch_bytes(url)
            expected = self.manifest.get("artifacts", {}).get(block["file"])
            if expected and hashlib.sha256(data).hexdigest() != expected:
                raise ValueError(f"{url} does not match the manifest's sha256; reload the page "
                                 "(the server's models/ may have changed)")
            self.files[k] = data
        return self.files[k]

    def _input(self, k):
        return np.zeros((1, *self.manifest["blocks"][k]["input_shape"]), np.float32)

    async def ensure(self, stop):
        """Blocks [first, stop) ready in at least one executor (numpy, or onnxruntime-web if
        numpy cannot run them), each timed once."""
        for k in range(self.first, stop):
            if k in self.numpy or k in self.ort_blocks:
                continue
            if self.numpy_ok:
                await self._load_numpy(k)
            else:
                await self.load_ort()
                if self.ort is None:
                    raise RuntimeError(f"block {k} needs onnxruntime-web, which did not load: {self.ort_error}")

    async def _load_numpy(self, k):
        [block] = load_blocks(self.manifest, {self.manifest["blocks"][k]["file"]: await self._file(k)}, k, k + 1)
        x = self._input(k)

        async def once():
            block(x)

        self.report(k, await timed_ms(once), "numpy")
        self.numpy[k] = block

    @property
    def ort_requested(self):
        return self._ort_task is not None

    async def load_ort(self):
        """Import onnxruntime-web and time every float block in it and in numpy; once
        (later calls wait)."""
        if self._ort_task is None:
            self._ort_task = asyncio.ensure_future(self._load_ort())
        await self._ort_task

    async def _load_ort(self):
        try:
            ort = await OrtWeb.load(self.ort_assets["base_url"], self.ort_assets["module"])
            blocks = {k: await ort.block(await self._file(k)) for k in range(self.first, self.count)}
            # The wasm engine optimizes hot code over the first runs: warm every block up
            # before timing any, or the first one looks several times slower than it is.
            for _ in range(ORT_WARM_UP_PASSES):
                for k, block in blocks.items():
                    await block(self._input(k))
            for k, block in blocks.items():
                x = self._input(k)
                self.report(k, await timed_ms(lambda block=block, x=x: block(x)), "ort")
            if self.numpy_ok:  # time numpy too: the planner compares measured times only
                for k in range(self.first, self.count):
                    if k not in self.numpy:
                        await self._load_numpy(k)
            self.ort, self.ort_blocks = ort, blocks
        except Exception as exc:  # a failed import or session: numpy stays, and the page says why
            self.ort, self.ort_error = None, f"{type(exc).__name__}: {exc}"

    async def run(self, x, start, stop, executor_of):
        """Blocks [start, stop) on x, each in `executor_of(k)` if loaded there, else the
        other. Between consecutive onnxruntime-web blocks the tensor stays in JS."""
        held = None  # the current tensor, as an ort.Tensor, while onnxruntime-web blocks follow each other
        for k in range(start, stop):
            ort_block = self.ort_blocks.get(k)
            if ort_block is not None and (executor_of(k) == "ort" or k not in self.numpy):
                given = held if held is not None else ort_block.tensor(x)
                held = await ort_block.run_tensor(given)
                given.dispose()
            else:
                if held is not None:
                    x, held = to_numpy(held), None
                x = self.numpy[k](x)
        return to_numpy(held) if held is not None else x
