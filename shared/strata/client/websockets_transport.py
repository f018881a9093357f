"""The CPython transport: `websockets` to the edge, httpx for its files, onnxruntime on the device.

A native device (a kiosk, a Raspberry Pi with a camera), `strata classify`, the load
benchmark and the tests run the same client as the browser over this transport. Its
fast float executor is native onnxruntime, where the browser's is onnxruntime-web: the
planner times both the same way. CPython only: Pyodide never imports this module.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
import onnxruntime as ort
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from strata.client.transport import FloatSession, Transport

log = logging.getLogger("strata.client")


def http_origin(edge_url: str) -> str:
    """The edge's HTTP origin from its WebSocket URL: ws://host:port/ws -> http://host:port."""
    parts = urlsplit(edge_url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"the edge's URL must look like ws://HOST:PORT/ws (or wss://); got {edge_url!r}")
    return urlunsplit(("https" if parts.scheme == "wss" else "http", parts.netloc, "", "", ""))


class _Socket:
    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    async def send(self, data: bytes) -> None:
        try:
            await self.connection.send(data)
        except ConnectionClosed as exc:
            raise ConnectionError(f"the edge closed the connection: {exc}") from exc

    def close(self) -> None:
        asyncio.ensure_future(self.connection.close())


class _Session:
    """One onnxruntime session, run in a thread so the probes' replies keep flowing."""

    def __init__(self, onnx_bytes: bytes) -> None:
        self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    async def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        [y] = await asyncio.to_thread(self.session.run, None, {self.input: x})
        return np.asarray(y, np.float32)


class _OnnxRuntime:
    async def session(self, onnx_bytes: bytes) -> FloatSession:
        return _Session(onnx_bytes)

    async def run_chain(self, sessions: list[FloatSession], x: np.ndarray) -> np.ndarray:
        for session in sessions:
            x = await session(x)
        return x


class WebSocketsTransport(Transport):
    """`notify` receives what the client reports unasked (kind, data); by default it is logged."""

    def __init__(self, edge_url: str, notify: Callable[[str, dict], None] | None = None,
                 timeout_s: float = 30.0) -> None:
        self.http = httpx.AsyncClient(base_url=http_origin(edge_url), timeout=timeout_s)
        self._notify = notify

    async def open(self, url: str, on_message: Callable[[bytes], None], on_close: Callable[[str], None]) -> _Socket:
        try:
            connection = await connect(url, compression=None, max_size=None, open_timeout=5)
        except (OSError, InvalidHandshake, InvalidURI, asyncio.TimeoutError) as exc:
            raise ConnectionError(f"cannot reach the edge at {url}: {exc}") from exc

        async def read() -> None:
            reason = "closed"
            try:
                async for message in connection:
                    on_message(message if isinstance(message, bytes) else message.encode())
            except ConnectionClosed as exc:
                reason = str(exc)
            finally:
                on_close(reason)

        asyncio.ensure_future(read())
        return _Socket(connection)

    async def fetch(self, path: str) -> tuple[bytes, dict[str, str]]:
        try:
            response = await self.http.get(path)
        except httpx.TransportError as exc:
            raise ConnectionError(f"cannot fetch {self.http.base_url}{path}: {exc}") from exc
        if response.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {response.status_code}: {response.text[:200]}")
        return response.content, {name.lower(): value for name, value in response.headers.items()}

    async def float_executor(self, assets: dict) -> _OnnxRuntime:
        return _OnnxRuntime()

    def notify(self, kind: str, data: dict) -> None:
        if self._notify is not None:
            self._notify(kind, data)
        else:
            log.debug("%s: %s", kind, data)

    async def aclose(self) -> None:
        await self.http.aclose()
