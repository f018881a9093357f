"""The edge's client for the cloud: Open Inference Protocol over keep-alive HTTP.

One httpx.AsyncClient per edge process keeps connections open, so a forward costs one
request, not a TCP handshake. Tensors travel as binary tensor data, not JSON numbers.

A circuit breaker guards it: a hung cloud would otherwise cost every request the full
timeout. After `failures_to_open` timeouts, connection failures or failed health probes
in a row, the cloud is marked down: infer() fails at once (CloudDown), and so do the
forwards still waiting for it, so the edge falls back without waiting out their
timeouts; the edge's background health probe (ping()) marks it up again when it answers.
Answers that are errors do not count: the cloud is there.

A Strata cloud adds its model time and load to each reply (`parameters.compute_ms`,
`parameters.in_flight`); other servers, Triton among them, do not, and these are None.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import httpx
import numpy as np
from strata.wire import is_number

from edge_server.blocks.graphs import INPUT, OUTPUT
from edge_server.cloud import protocol


log = logging.getLogger("strata.edge")


class CloudUnavailable(RuntimeError):
    """The cloud did not answer in time, or answered with an error."""


class CloudDown(CloudUnavailable):
    """The circuit breaker has the cloud marked down: not even tried."""


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
    def __init__(self, url: str, model: str, timeout_s: float = 5.0, token: str | None = None,
                 probe_timeout_s: float = 1.0, failures_to_open: int = 3) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.model = model
        self.client = httpx.AsyncClient(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout_s,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self.probe_timeout_s, self.failures_to_open = probe_timeout_s, failures_to_open
        self.failures = 0  # timeouts, connection failures and failed probes in a row
        self.down_since: float | None = None  # time.monotonic() when marked down
        self.answered_once = False  # whether the cloud ever answered: with `down`, whether its state is known
        self._marked_down = asyncio.Event()  # set while down: cuts the forwards in flight

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def _failed(self, reason: str) -> None:
        self.failures += 1
        if self.failures >= self.failures_to_open and not self.down:
            self.down_since = time.monotonic()
            self._marked_down.set()
            log.warning("cloud marked down after %d failures in a row (last: %s); the edge runs its blocks "
                        "until a health probe succeeds", self.failures, reason)

    def _answered(self) -> None:
        if self.down:
            log.warning("cloud is up again after %.1f s down", time.monotonic() - self.down_since)
        self.failures, self.down_since, self.answered_once = 0, None, True
        self._marked_down.clear()

    def model_name(self, start: int, variant: str = "") -> str:
        return suffix_model_name(self.model, start, variant)

    async def infer(self, x: np.ndarray, start: int, variant: str = "") -> CloudReply:
        """Run blocks [start, N) of a variant in the cloud; raise CloudUnavailable on any
        failure (CloudDown at once while the cloud is marked down)."""
        if self.down:
            raise self._down_error()
        body, headers = protocol.build_body({"outputs": [
            {"name": OUTPUT, "parameters": {"binary_data": True}}]}, "inputs", {INPUT: x}, binary=True)
        begin = time.perf_counter()
        post = asyncio.ensure_future(self.client.post(f"/v2/models/{self.model_name(start, variant)}/infer",
                                                      content=body, headers=headers))
        marked_down = asyncio.ensure_future(self._marked_down.wait())
        try:
            await asyncio.wait({post, marked_down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            marked_down.cancel()
            cut = not post.done()
            if cut:
                post.cancel()
        if cut:  # the cloud was marked down meanwhile: this forward would time out too
            raise self._down_error()
        try:
            response = post.result()
        except httpx.HTTPError as exc:
            self._failed(f"{type(exc).__name__}: {exc}")
            raise CloudUnavailable(f"cloud request failed: {type(exc).__name__}: {exc}") from exc
        self._answered()
        round_trip_ms = (time.perf_counter() - begin) * 1000
        if response.status_code != 200:
            raise CloudUnavailable(f"cloud answered {response.status_code}: {response.text[:300]}")
        try:
            document, tensors = protocol.parse_body(response.content, response.headers.get(protocol.HEADER_LENGTH), "outputs")
            output = np.asarray(tensors[OUTPUT], np.float32)
            parameters = document.get("parameters") or {}
            if not isinstance(parameters, dict):
                raise protocol.ProtocolError(f"'parameters' must be an object, got {parameters!r:.200}")
            compute_ms, in_flight = parameters.get("compute_ms"), parameters.get("in_flight")
            if not (compute_ms is None or is_number(compute_ms)) or not (in_flight is None or type(in_flight) is int):
                raise protocol.ProtocolError(f"'parameters' compute_ms must be a number and in_flight an integer "
                                             f"when given, got {parameters!r:.200}")
            if not np.isfinite(output).all():
                raise protocol.ProtocolError("the output holds NaN or Inf")
        except (protocol.ProtocolError, KeyError) as exc:
            raise CloudUnavailable(f"cloud reply is not usable: {exc}") from exc
        return CloudReply(output, round_trip_ms, None if compute_ms is None else float(compute_ms), in_flight, len(body),
                          len(response.content))

    def _down_error(self) -> CloudDown:
        return CloudDown(f"the cloud is marked down ({time.monotonic() - self.down_since:.0f} s ago, after "
                         f"{self.failures} failures in a row); the edge re-probes it in the background")

    async def ping(self) -> float:
        """Round trip of a health check, in ms: the link's RTT plus a trivial handler.
        Its outcome moves the circuit breaker (see the module's docstring)."""
        begin = time.perf_counter()
        try:
            response = await self.client.get("/v2/health/live", timeout=self.probe_timeout_s)
        except httpx.HTTPError as exc:
            self._failed(f"health check: {type(exc).__name__}: {exc}")
            raise CloudUnavailable(f"cloud health check failed: {exc}") from exc
        if response.status_code != 200:
            self._failed(f"health check answered {response.status_code}")
            raise CloudUnavailable(f"cloud health check answered {response.status_code}")
        self._answered()
        return (time.perf_counter() - begin) * 1000

    async def block_ms(self, variant: str = "") -> list[float]:
        """The cloud's own per-block times, from `parameters.block_ms` of the full model's
        metadata (a Strata cloud sends them; Triton does not, and this raises)."""
        try:
            response = await self.client.get(f"/v2/models/{self.model_name(0, variant)}")
            times = response.json()["parameters"]["block_ms"]
            if not isinstance(times, list) or not all(is_number(ms) and ms >= 0 for ms in times):
                raise ValueError(f"block_ms must be a list of numbers >= 0, got {times!r:.200}")
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise CloudUnavailable(f"no per-block times in the cloud's metadata: {exc}") from exc
        return [float(ms) for ms in times]

    async def aclose(self) -> None:
        await self.client.aclose()
