"""The cloud tier: an Open Inference Protocol (KServe v2) REST server over ONNX graphs.

It serves one model per cut point, named `<model>-from-<k>`: the suffix of the main
path from block k to the logits; and the same for each pruned variant listed in the
manifest, `<model>-<variant>-from-<k>` (a variant that fails verification is left out). A suffix needs no graph of its own to
be described or to answer: it runs as the chain of the block sessions until its joined
graph, built on its first request, is ready (edge_server/cloud/suffixes.py). The edge forwards the deeper layers here; anything
that speaks the protocol (tritonclient, KServe, curl) can use it too, and Triton or
KServe can take its place (docs/scaling.md).

    GET  /v2/health/live | /v2/health/ready        liveness, readiness
    GET  /v2                                       server metadata
    GET  /v2/models/{name}                         model metadata
    GET  /v2/models/{name}/ready                   model readiness
    POST /v2/models/{name}/infer                   JSON, or JSON + binary tensor data
    GET  /metrics                                  Prometheus metrics (edge_server/cloud/metrics.py)

Responses carry `parameters.compute_ms` (model time) and `parameters.in_flight`
(requests being served), which the edge reports as cloud time and load; model metadata
carries `parameters.block_ms`, this machine's time for each block the model runs.

A bad request gets 400 and `{"error": ...}` naming the field, and the connection stays
open: a wrong type or shape, string data for a number type, two inputs with one name,
an output the model does not have. An unknown model or version gets 404, a body over
`max_body_bytes` 413. The bearer token's scheme is case-insensitive (RFC 7235).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edge_server.blocks.graphs import INPUT, OUTPUT
from edge_server.blocks.main_path import ORT_DTYPES, MainPath
from edge_server.blocks.variants import Variants
from edge_server.cloud import protocol
from edge_server.cloud.metrics import CloudMetrics
from edge_server.cloud.suffixes import Suffixes
from edge_server.edge.cloud_client import suffix_model_name

SERVER_NAME = "strata-cloud"
VERSION = "1"  # every model here has this one version


def _datatype(arg: ort.NodeArg) -> str:
    """The protocol's datatype of a graph input or output, e.g. FP32, FP16, UINT8."""
    return protocol.datatype_of(np.empty(0, ORT_DTYPES[arg.type]))


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as the protocol describes it: its name, datatype and shape
    (-1 for a dimension that varies)."""

    name: str
    datatype: str
    shape: list[int]

    @classmethod
    def of(cls, arg: ort.NodeArg, name: str | None = None) -> TensorSpec:
        return cls(name or arg.name, _datatype(arg), [d if isinstance(d, int) else -1 for d in arg.shape])


@dataclass
class ServedModel:
    """One model with a single input, as the protocol describes it; `run` maps a batch to
    the outputs by name. Describing it needs no session (see edge_server/cloud/suffixes.py)."""

    name: str
    input: TensorSpec
    outputs: list[TensorSpec]
    run: Callable[[np.ndarray], dict[str, np.ndarray]]
    block_ms: list[float] | None = None  # this machine's time per block the model runs, at batch 1

    @classmethod
    def of_session(cls, name: str, session: ort.InferenceSession, block_ms: list[float] | None = None) -> ServedModel:
        """A model that is one onnxruntime session."""
        names, input_name = [o.name for o in session.get_outputs()], session.get_inputs()[0].name
        return cls(name, TensorSpec.of(session.get_inputs()[0]), [TensorSpec.of(o) for o in session.get_outputs()],
                   lambda x: dict(zip(names, session.run(names, {input_name: x}), strict=True)), block_ms)

    def metadata(self) -> dict:
        metadata = {
            "name": self.name, "versions": [VERSION], "platform": "onnxruntime_onnx",
            "inputs": [vars(self.input)], "outputs": [vars(o) for o in self.outputs],
        }
        if self.block_ms is not None:
            metadata["parameters"] = {"block_ms": self.block_ms}
        return metadata

    def check(self, tensors: dict[str, np.ndarray]) -> np.ndarray:
        """The single input, validated against the graph's name, rank and fixed dims."""
        spec = self.input
        if set(tensors) != {spec.name}:
            raise protocol.ProtocolError(f"model {self.name} takes one input named {spec.name!r}, got {sorted(tensors)}")
        x = tensors[spec.name]
        if x.ndim != len(spec.shape) or any(e not in (-1, d) for e, d in zip(spec.shape, x.shape, strict=True)):
            raise protocol.ProtocolError(f"model {self.name} input {spec.name!r} needs shape {spec.shape}, "
                                         f"got {list(x.shape)}")
        if protocol.datatype_of(x) != spec.datatype:
            raise protocol.ProtocolError(f"model {self.name} input {spec.name!r} needs {spec.datatype}, "
                                         f"got {protocol.datatype_of(x)}")
        if not np.isfinite(x).all():
            raise protocol.ProtocolError(f"model {self.name} input {spec.name!r} contains NaN or Inf")
        return x

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]


def create_cloud_app(models: dict[str, ServedModel], token: str | None = None, workers: int = 2,
                     max_body_bytes: int = 64 * 1024 * 1024) -> Starlette:
    pool = ThreadPoolExecutor(workers, thread_name_prefix="cloud-infer")
    in_flight = 0
    metrics = CloudMetrics(lambda: in_flight)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def authorized(request: Request) -> bool:
        if token is None:
            return True
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), token.encode())

    def model_or_error(request: Request) -> ServedModel | JSONResponse:
        if not authorized(request):
            return error(401, "missing or wrong bearer token: send 'Authorization: Bearer <token>'")
        name = request.path_params["name"]
        if name not in models:
            return error(404, f"model {name!r} is not served here; available: {', '.join(sorted(models))}")
        version = request.path_params.get("version", VERSION)
        if version != VERSION:
            return error(404, f"model {name!r} has no version {version!r}; it has version {VERSION}")
        return models[name]

    async def read_body(request: Request) -> bytes | None:
        """The body, or None once it passes max_body_bytes (by its Content-Length, or as it streams)."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body_bytes:
            return None
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        return JSONResponse({"ready": True})

    async def server_metadata(request: Request) -> Response:
        return JSONResponse({"name": SERVER_NAME, "version": "1", "extensions": ["binary_tensor_data"]})

    async def model_metadata(request: Request) -> Response:
        model = model_or_error(request)
        return model if isinstance(model, Response) else JSONResponse(model.metadata())

    async def model_ready(request: Request) -> Response:
        model = model_or_error(request)
        return model if isinstance(model, Response) else JSONResponse({"name": model.name, "ready": True})

    async def infer(request: Request) -> Response:
        response = await answer_infer(request)
        name = request.path_params["name"]
        metrics.requests.labels(name if name in models else "", str(response.status_code)).inc()
        return response

    async def answer_infer(request: Request) -> Response:
        nonlocal in_flight
        model = model_or_error(request)
        if isinstance(model, Response):
            return model
        body = await read_body(request)
        if body is None:
            return error(413, f"the body exceeds the limit of {max_body_bytes} bytes")
        try:
            document, tensors = protocol.parse_body(body, request.headers.get(protocol.HEADER_LENGTH), "inputs")
            requested = protocol.requested_outputs(document)
            x = model.check(tensors)
            unknown = set(requested) - set(model.output_names)
            if unknown:
                raise protocol.ProtocolError(f"model {model.name} has no output {sorted(unknown)[0]!r}; "
                                             f"its outputs: {', '.join(model.output_names)}")
        except protocol.ProtocolError as exc:
            return error(400, str(exc))
        in_flight += 1
        try:
            start = time.perf_counter()
            outputs = await asyncio.get_running_loop().run_in_executor(pool, model.run, x)
            compute_ms = (time.perf_counter() - start) * 1000
        finally:
            in_flight -= 1
        metrics.compute.labels(model.name).observe(compute_ms / 1000)
        metrics.batches.observe(len(x) if x.ndim else 1)
        if requested:
            outputs = {name: outputs[name] for name in requested}
        binary = (document.get("parameters") or {}).get("binary_data_output") is True or any(
            parameters.get("binary_data") is True for parameters in requested.values())
        reply = {"model_name": model.name, "model_version": VERSION,
                 "parameters": {"compute_ms": compute_ms, "in_flight": in_flight}}
        if "id" in document:
            reply["id"] = document["id"]
        content, headers = protocol.build_body(reply, "outputs", outputs, binary)
        return Response(content, headers=headers)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return error(exc.status_code, exc.detail)

    async def internal_error(request: Request, exc: Exception) -> Response:  # a bug; logged by uvicorn
        return error(500, f"internal error: {type(exc).__name__}")

    routes = [
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", server_metadata),
        Route("/v2/models/{name}", model_metadata),
        Route("/v2/models/{name}/versions/{version}", model_metadata),
        Route("/v2/models/{name}/ready", model_ready),
        Route("/v2/models/{name}/versions/{version}/ready", model_ready),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
        metrics.route(),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        pool.shutdown(wait=False)

    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={HTTPException: http_error, Exception: internal_error})


def load_suffix_models(models_dir: Path, joined_bytes: int) -> dict[str, ServedModel]:
    """Every suffix of the main path and of each variant, ready to serve at once: each
    runs as a chain of the block sessions until its joined graph is built, on its first
    request (edge_server/cloud/suffixes.py; joined_bytes: Settings.cloud_joined_bytes)."""
    base = MainPath(models_dir)
    variants = Variants(base, max_bytes=0)  # verified and profiled; the suffixes hold each variant's blocks
    paths = {variant: variants.get(variant) for variant in variants.info}
    suffixes = Suffixes(paths, joined_bytes)
    models = {}
    for variant, path in paths.items():
        output = TensorSpec.of(path.sessions[-1].get_outputs()[0], OUTPUT)
        for k in range(len(path)):
            name = suffix_model_name(base.name, k, variant)
            models[name] = ServedModel(name, TensorSpec.of(path.sessions[k].get_inputs()[0], INPUT), [output],
                                       functools.partial(_run_suffix, suffixes, k, variant),
                                       variants.info[variant].block_ms[k:])
    return models


def _run_suffix(suffixes: Suffixes, start: int, variant: str, x: np.ndarray) -> dict[str, np.ndarray]:
    return {OUTPUT: suffixes.run(x, start, variant)}
