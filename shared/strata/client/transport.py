"""What the client runtime takes from its platform: a transport, and nothing else.

The client (strata.client.runtime) never touches a socket, an HTTP API or a device
executor itself. As in httpx, where one client runs over pluggable transports, a
Transport supplies them:

    open(url, on_message, on_close)  a message socket to the edge's /ws (binary frames)
    fetch(path)                      a file the edge serves ("/models/manifest.json"): body, headers
    float_executor(assets)           the device's fast float executor, named "ort" in plans
    notify(kind, data)               tell the application something happened, unasked
    clock()                          seconds, monotonic, sub-millisecond resolution

Two transports exist: browser/worker.py's (Pyodide: the JS WebSocket, fetch,
onnxruntime-web, postMessage) and strata.client.websockets_transport (CPython:
websockets, httpx, onnxruntime). Only this module's interfaces are imported by the
runtime, so it runs unchanged in both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import numpy as np


class Socket(Protocol):
    """An open message socket to the edge."""

    async def send(self, data: bytes) -> None:
        """Queue one binary message; raise ConnectionError if the socket is closed."""

    def close(self) -> None:
        """Close the socket; its on_close callback runs once."""


class FloatSession(Protocol):
    """One ONNX graph with one float input and one output, in the device's float executor."""

    async def __call__(self, x: np.ndarray) -> np.ndarray:
        """Run the graph on x (batch first, float32); return its output as float32."""


class FloatExecutor(Protocol):
    """The device's fast executor for float blocks (onnxruntime-web in the browser,
    onnxruntime in CPython); numpy (strata.blocks) is the other one, always there."""

    async def session(self, onnx_bytes: bytes) -> FloatSession:
        """A session over a serialized ONNX graph."""

    async def run_chain(self, sessions: list[FloatSession], x: np.ndarray) -> np.ndarray:
        """Run sessions one after another on x; an executor may keep the tensor in its
        own memory between them (onnxruntime-web keeps it in JS)."""


class Transport:
    """The base every transport extends. `fetch`, `open` and `float_executor` are the
    platform's; `notify` and `clock` have defaults that suit tests and scripts."""

    async def open(self, url: str, on_message: Callable[[bytes], None], on_close: Callable[[str], None]) -> Socket:
        """Connect to a WebSocket URL; messages and the close (with a reason) arrive by
        callback. Raise ConnectionError if no connection can be made."""
        raise NotImplementedError

    async def fetch(self, path: str) -> tuple[bytes, dict[str, str]]:
        """GET a path on the edge's origin: (body, headers with lower-case names). Raise
        ConnectionError for a network failure, RuntimeError for an HTTP error status."""
        raise NotImplementedError

    async def float_executor(self, assets: dict) -> FloatExecutor:
        """Load the device's fast float executor; `assets` is assets.json's "ort" entry
        (where the browser finds onnxruntime-web). Raise if it cannot load."""
        raise NotImplementedError

    def notify(self, kind: str, data: dict) -> None:
        """Something happened that the application may show: "edge" (connection state),
        "plan" (a new plan and the context), "executor" (the float executor's state)."""

    def clock(self) -> float:
        """Seconds since an arbitrary start, monotonic."""
        return time.perf_counter()

    async def aclose(self) -> None:
        """Release what the transport holds (connection pools); the client is done with it."""
