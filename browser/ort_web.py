"""onnxruntime-web, the browser's fast float executor (strata.client.transport.FloatExecutor).

The numpy executor needs nothing beyond Pyodide; onnxruntime-web (its CPU wasm build,
served by the edge from build/web/ort/) runs float convolutions about ten times faster
but costs 3.7 MB (gzip) to fetch. So the client loads it only when a plan could use
float blocks on the device, then times both executors and runs each block in the faster.
The binary branch always stays in numpy: onnxruntime has no XNOR-popcount.
"""

import js
import numpy as np
from pyodide.ffi import to_js


class OrtWeb:
    """The imported onnxruntime-web module, configured for this worker."""

    def __init__(self, ort):
        self.ort = ort

    @classmethod
    async def load(cls, base_url: str, module: str) -> "OrtWeb":
        # worker.js's importModule(): Python cannot write a dynamic import() itself.
        ort = await js.importModule(base_url + module)
        ort.env.wasm.wasmPaths = base_url  # the wasm files next to it, never a CDN
        return cls(ort)

    async def session(self, onnx_bytes: bytes) -> "OrtBlock":
        session = await self.ort.InferenceSession.create(to_js(onnx_bytes))
        return OrtBlock(self.ort, session)

    async def run_chain(self, sessions: list["OrtBlock"], x: np.ndarray) -> np.ndarray:
        """Run consecutive blocks on x; between them the tensor stays in JS."""
        held = sessions[0].tensor(x)
        for session in sessions:
            given, held = held, await session.run_tensor(held)
            given.dispose()
        return to_numpy(held)


class OrtBlock:
    """One block's InferenceSession. Tensors stay in JS between consecutive blocks run
    here (run_tensor); numpy copies are made only where numpy takes over."""

    def __init__(self, ort, session):
        self.ort, self.session = ort, session
        self.input, self.output = session.inputNames.at(0), session.outputNames.at(0)

    def tensor(self, x: np.ndarray):
        x = np.ascontiguousarray(x, np.float32)
        return self.ort.Tensor.new("float32", to_js(x.ravel()), to_js(list(x.shape)))

    async def run_tensor(self, tensor):
        """An ort.Tensor in, the block's output ort.Tensor out."""
        outputs = await self.session.run(js.Object.fromEntries(to_js([[self.input, tensor]])))
        return getattr(outputs, self.output)

    async def __call__(self, x: np.ndarray) -> np.ndarray:
        tensor = self.tensor(x)
        result = await self.run_tensor(tensor)
        tensor.dispose()
        return to_numpy(result)

    def submit(self, x: np.ndarray):
        """Start a run on x without awaiting it: the JS promise of the session's outputs,
        for worker.js to await (no trip through Python's event loop); collect() reads them."""
        return self.session.run(js.Object.fromEntries(to_js([[self.input, self.tensor(x)]])))

    def collect(self, outputs) -> np.ndarray:
        """The output of a run submit() started, as numpy."""
        return to_numpy(getattr(outputs, self.output))


def to_numpy(tensor) -> np.ndarray:
    """An ort.Tensor's data as a numpy array (a copy); the tensor is disposed."""
    shape = [int(d) for d in tensor.dims.to_py()]
    array = np.asarray(tensor.data.to_py(), np.float32).reshape(shape)
    tensor.dispose()
    return array
