"""onnxruntime-web, the device's second executor for float blocks, driven from Python.

The numpy executor needs nothing beyond Pyodide; onnxruntime-web (its CPU wasm build,
served by the edge from build/web/ort/) runs float convolutions about ten times faster
but costs 3.7 MB (gzip) to fetch. So the worker imports it only when a plan could use
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

    async def block(self, onnx_bytes: bytes) -> "OrtBlock":
        session = await self.ort.InferenceSession.create(to_js(onnx_bytes))
        return OrtBlock(self.ort, session)


class OrtBlock:
    """One block's InferenceSession: numpy in, numpy out."""

    def __init__(self, ort, session):
        self.ort, self.session = ort, session
        self.input, self.output = session.inputNames.at(0), session.outputNames.at(0)

    async def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        tensor = self.ort.Tensor.new("float32", to_js(x.ravel()), to_js(list(x.shape)))
        feeds = js.Object.fromEntries(to_js([[self.input, tensor]]))
        outputs = await self.session.run(feeds)
        result = getattr(outputs, self.output)
        shape = [int(d) for d in result.dims.to_py()]
        array = np.asarray(result.data.to_py(), np.float32).reshape(shape)
        tensor.dispose()
        result.dispose()
        return array
