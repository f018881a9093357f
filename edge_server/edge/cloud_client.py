"""The edge's client for the cloud: Open Inference Protocol over keep-alive HTTP.

One httpx.AsyncClient per edge process keeps connections open, so a forward costs one
request, not a TCP handshake. Tensors travel as binary tensor data, not JSON numbers.
A Strata cloud adds its model time and load to each reply (`parameters.compute_ms`,
`parameters.in_flight`); other servers, Triton among them, do not, and these are None.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
import numpy as np

from edge_server.blocks.graphs import INPUT, OUTPUT
from edge_server.cloud import protocol


class CloudUnavailable(RuntimeError):
    """The cloud did not answer in time, or answered with an error."""


@dataclass(frozen=True)
class CloudReply:
    output: np.ndarray
    round_trip_ms: float  # from sending the request to having the reply, as the edge sees it
    compute_ms: float | None  # the cloud's own model time; None if it does not say (Triton)
    in_flight: int | None  # requests the cloud was serving at the time; None if it does not say
    sent_bytes: int
    received_bytes: int


def suffix_model_name(model: str, start: int, variant: str = "") -> str:
    """The cloud's name for blocks [start, N) of a variant ("" is the unpruned model)."""
    return f"{model}-{variant}-from-{start}" if variant else f"{model}-from-{start}"


class CloudClient:
    def __init__(self, url: str, model: str, timeout_s: float = 5.0, token: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.model = model
        self.client = httpx.AsyncClient(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout_s,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )

    def model_name(self, start: int, variant: str = "") -> str:
        return suffix_model_name(self.model, start, variant)

    async def infer(self, x: np.ndarray, start: int, variant: str = "") -> CloudReply:
        """Run blocks [start, N) of a variant in the cloud; raise CloudUnavailable on any failure."""
        body, headers = protocol.build_body({"outputs": [
            {"name": OUTPUT, "parameters": {"binary_data": True}}]}, "inputs", {INPUT: x}, binary=True)
        begin = time.perf_counter()
        try:
            response = await self.client.post(f"/v2/models/{self.model_name(start, variant)}/infer", content=body,
                                              headers=headers)
        except httpx.HTTPError as exc:
            raise CloudUnavailable(f"cloud request failed: {type(exc).__name__}: {exc}") from exc
        round_trip_ms = (time.perf_counter() - begin) * 1000
        if response.status_code != 200:
            raise CloudUnavailable(f"cloud answered {response.status_code}: {response.text[:300]}")
        try:
            document, tensors = protocol.parse_body(response.content, response.headers.get(protocol.HEADER_LENGTH), "outputs")
            output = tensors[OUTPUT]
        except (protocol.ProtocolError, KeyError) as exc:
            raise CloudUnavailable(f"cloud reply is not usable: {exc}") from exc
        parameters = document.get("parameters") or {}
        compute_ms, in_flight = parameters.get("compute_ms"), parameters.get("in_flight")
        return CloudReply(np.asarray(output, np.float32), round_trip_ms,
                          None if compute_ms is None else float(compute_ms), None if in_flight is None else int(in_flight),
                          len(body), len(response.content))

    async def ping(self) -> float:
        """Round trip of a health check, in ms: the link's RTT plus a trivial handler."""
        begin = time.perf_counter()
        try:
            response = await self.client.get("/v2/health/live")
        except httpx.HTTPError as exc:
            raise CloudUnavailable(f"cloud health check failed: {exc}") from exc
        if response.status_code != 200:
            raise CloudUnavailable(f"cloud health check answered {response.status_code}")
        return (time.perf_counter() - begin) * 1000

    async def block_ms(self, variant: str = "") -> list[float]:
        """The cloud's own per-block times, from `parameters.block_ms` of the full model's
        metadata (a Strata cloud sends them; Triton does not, and this raises)."""
        try:
            response = await self.client.get(f"/v2/models/{self.model_name(0, variant)}")
            times = response.json()["parameters"]["block_ms"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise CloudUnavailable(f"no per-block times in the cloud's metadata: {exc}") from exc
        return [float(ms) for ms in times]

    async def aclose(self) -> None:
        await self.client.aclose()
