"""Python in the browser's Web Worker: the bridge from strata to the browser's APIs.

Everything that does not touch a browser API lives in the strata package (shared with
the servers and tested in CPython and in Pyodide); this file only wires it to the JS
WebSocket and to the page.
"""

import asyncio
import sys
import time

import numpy as np
import js
from js import WebSocket
from pyodide.ffi import create_proxy, to_js

import strata
from strata import wire
from strata.probes import WindowedMedian
from strata.wire import MessageType


class EdgeLink:
    """A WebSocket to the edge, awaited from asyncio: one frame out, one frame back."""

    def __init__(self, url):
        self.inbox = asyncio.Queue()
        self.opened = asyncio.get_event_loop().create_future()
        self.socket = WebSocket.new(url)
        self.socket.binaryType = "arraybuffer"
        self._handlers = [
            create_proxy(lambda event: self.opened.done() or self.opened.set_result(True)),
            create_proxy(lambda event: self.inbox.put_nowait(bytes(event.data.to_py()))),
            create_proxy(lambda event: self.opened.done() or self.opened.set_exception(ConnectionError(f"cannot reach {url}"))),
        ]
        self.socket.onopen, self.socket.onmessage, self.socket.onerror = self._handlers

    async def exchange(self, frame):
        """Send one frame and wait for the reply frame."""
        await self.opened
        self.socket.send(to_js(wire.encode(frame)))
        return wire.decode(await self.inbox.get())

    def close(self):
        self.socket.close()
        for handler in self._handlers:
            handler.destroy()


def runtime_info():
    """What runs here, as proof that the answer came from Python inside the worker."""
    return {
        "python": sys.version.split()[0],
        "platform": sys.platform,
        "numpy": np.__version__,
        "strata": strata.__version__,
        "isolated": bool(js.crossOriginIsolated),
    }


async def measure_rtt(url, count):
    """Median round-trip time of `count` small pings to the edge, in milliseconds."""
    link = EdgeLink(url)
    rtt = WindowedMedian(window=count)
    try:
        for seq in range(count):
            start = time.perf_counter()
            reply = await link.exchange(wire.ping(seq, start * 1000))
            if reply.type is not MessageType.PONG or reply.header.get("seq") != seq:
                raise RuntimeError(f"expected PONG {seq}, got {reply.type.name} {reply.header}")
            rtt.add((time.perf_counter() - start) * 1000)
    finally:
        link.close()
    return {"median_ms": rtt.value, "samples": rtt.count}
