"""The edge's ASGI app: the page, the worker's runtime files, the model, the WebSocket.

    /              browser/            the page and the worker scripts (revalidated)
    /assets.json   build/web/          what the worker loads, with sizes and sha256s
    /pyodide/      build/web/pyodide/  Pyodide (versioned path, immutable)
    /runtime/      build/web/runtime/  numpy, strata, the standard library, the snapshot (hashed names, immutable)
    /ort/          build/web/ort/      onnxruntime-web (versioned path, immutable)
    /uplot/        build/web/uplot/    uPlot, the page's charts (versioned path, immutable)
    /models/       models/             manifest, browser bundle, samples (revalidated)
    /joined/       edge_server/edge/joined.py  device blocks joined into one graph, for onnxruntime-web
    /demo/link     the link emulator   demo mode only (edge_server/edge/demo_link.py)
    /ws            WebSocket           strata.wire frames (edge_server/edge/connection.py)
    /metrics       Prometheus metrics  edge_server/edge/metrics.py
    /health/live   200 while the process serves
    /health/ready  200 once the model is loaded and the cloud, if any, answered or is marked
                   down; 503 before, and during a graceful shutdown (edge_server/edge/drain.py)

At start-up it loads and verifies the model, profiles its blocks, and connects to the
cloud; see edge_server/edge/runtime.py for what happens to each offloaded sample.

Every request's Host must be one this server goes by (allowed_hosts()): a page on
another name that rebinds its DNS to this machine gets 400, so it cannot use a
visitor's browser against the edge even though the browser thinks it is same-origin.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

from edge_server.blocks.main_path import MainPath
from edge_server.config import Settings
from edge_server.edge.cloud_client import CloudClient
from edge_server.edge.connection import serve_connection
from edge_server.edge.demo_link import demo_routes
from edge_server.edge.drain import Drain
from edge_server.edge.isolation import CrossOriginIsolation
from edge_server.edge.joined import joined
from edge_server.edge.limits import ConnectionLimits
from edge_server.edge.metrics import EdgeMetrics
from edge_server.edge.runtime import EdgeRuntime
from edge_server.edge.static import IMMUTABLE, REVALIDATE, StaticFiles


WILDCARDS = ("0.0.0.0", "::", "")


def allowed_hosts(settings: Settings) -> list[str]:
    """The names and addresses in a request's Host this edge answers to: loopback, the
    address it binds (unless a wildcard), and settings.allowed_hosts."""
    own = [] if settings.host in WILDCARDS else [f"[{settings.host}]" if ":" in settings.host else settings.host]
    return list(dict.fromkeys(["127.0.0.1", "localhost", "[::1]", *own, *settings.allowed_hosts]))


def create_app(settings: Settings | None = None) -> Starlette:
    """The edge's app. Its `state.drain` is what serving.serve() awaits on SIGTERM."""
    settings = settings or Settings()
    limits = ConnectionLimits(settings.max_connections, settings.max_queued_reply_bytes,
                              2 * settings.max_probe_reply_bytes)
    metrics, drain = EdgeMetrics(), Drain(settings.shutdown_timeout_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        main_path = MainPath(settings.models_dir)
        cloud = None
        if settings.cloud_url:
            cloud = CloudClient(settings.cloud_url, main_path.name, settings.cloud_timeout_s, settings.cloud_token,
                                settings.cloud_probe_timeout_s, settings.cloud_failures_to_open)
        runtime = app.state.runtime = EdgeRuntime(main_path, settings, cloud, metrics)
        metrics.watch(runtime, limits, drain)
        await runtime.start()
        try:
            yield
        finally:
            await runtime.close()

    async def assets(request: Request) -> FileResponse:
        return FileResponse(settings.assets_file, headers={"Cache-Control": REVALIDATE})

    async def socket(websocket: WebSocket) -> None:
        await serve_connection(websocket, settings, websocket.app.state.runtime, limits, metrics, drain)

    async def live(request: Request) -> JSONResponse:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> JSONResponse:
        runtime: EdgeRuntime | None = getattr(request.app.state, "runtime", None)
        if runtime is None:
            reason = "the model is not loaded yet"
        elif drain.draining:
            reason = "shutting down"
        elif not runtime.cloud_known:
            reason = "the cloud has neither answered nor been marked down yet"
        else:
            reason = None
        cloud = "none" if runtime is None or runtime.cloud is None else "down" if runtime.cloud.down else \
            "up" if runtime.cloud.answered_once else "unknown"
        return JSONResponse({"ready": reason is None, "reason": reason, "cloud": cloud},
                            status_code=200 if reason is None else 503)

    routes = [
        WebSocketRoute("/ws", socket),
        metrics.route(),
        Route("/health/live", live),
        Route("/health/ready", ready),
        Route("/assets.json", assets),
        Route("/joined/{start:int}-{stop:int}.onnx", joined),
        *demo_routes(settings.link_control_url),
        Mount("/pyodide", StaticFiles(directory=settings.web_dir / "pyodide", cache_control=IMMUTABLE)),
        Mount("/ort", StaticFiles(directory=settings.web_dir / "ort", cache_control=IMMUTABLE)),
        Mount("/uplot", StaticFiles(directory=settings.web_dir / "uplot", cache_control=IMMUTABLE)),
        Mount("/runtime", StaticFiles(directory=settings.web_dir / "runtime", cache_control=IMMUTABLE)),
        Mount("/models", StaticFiles(directory=settings.models_dir, cache_control=REVALIDATE)),
        Mount("/", StaticFiles(directory=settings.browser_dir, cache_control=REVALIDATE, html=True)),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(settings), www_redirect=False),
                  Middleware(CrossOriginIsolation)]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.drain = drain
    return app
