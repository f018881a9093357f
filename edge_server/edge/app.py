"""The edge's ASGI app: the page, the worker's runtime files, the model, the WebSocket.

    /              browser/            the page and the worker scripts (revalidated)
    /assets.json   build/web/          what the worker loads, with sizes
    /pyodide/      build/web/pyodide/  Pyodide and numpy (versioned path, immutable)
    /ort/          build/web/ort/      onnxruntime-web (versioned path, immutable)
    /uplot/        build/web/uplot/    uPlot, the page's charts (versioned path, immutable)
    /wheels/       build/web/wheels/   the strata wheel (revalidated)
    /models/       models/             manifest, browser bundle, samples (revalidated)
    /joined/       edge_server/edge/joined.py  device blocks joined into one graph, for onnxruntime-web
    /demo/link     the link emulator   demo mode only (edge_server/edge/demo_link.py)
    /ws            WebSocket           strata.wire frames (edge_server/edge/connection.py)

At start-up it loads and verifies the model, profiles its blocks, and connects to the
cloud; see edge_server/edge/runtime.py for what happens to each offloaded sample.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

from edge_server.blocks.main_path import MainPath
from edge_server.config import Settings
from edge_server.edge.cloud_client import CloudClient
from edge_server.edge.connection import serve_connection
from edge_server.edge.demo_link import demo_routes
from edge_server.edge.isolation import CrossOriginIsolation
from edge_server.edge.joined import joined
from edge_server.edge.runtime import EdgeRuntime
from edge_server.edge.static import IMMUTABLE, REVALIDATE, StaticFiles


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        main_path = MainPath(settings.models_dir)
        cloud = None
        if settings.cloud_url:
            cloud = CloudClient(settings.cloud_url, main_path.name, settings.cloud_timeout_s, settings.cloud_token)
        runtime = app.state.runtime = EdgeRuntime(main_path, settings, cloud)
        await runtime.start()
        try:
            yield
        finally:
            await runtime.close()

    async def assets(request: Request) -> FileResponse:
        return FileResponse(settings.assets_file, headers={"Cache-Control": REVALIDATE})

    async def socket(websocket: WebSocket) -> None:
        await serve_connection(websocket, settings, websocket.app.state.runtime)

    routes = [
        WebSocketRoute("/ws", socket),
        Route("/assets.json", assets),
        Route("/joined/{start:int}-{stop:int}.onnx", joined),
        *demo_routes(settings.link_control_url),
        Mount("/pyodide", StaticFiles(directory=settings.web_dir / "pyodide", cache_control=IMMUTABLE)),
        Mount("/ort", StaticFiles(directory=settings.web_dir / "ort", cache_control=IMMUTABLE)),
        Mount("/uplot", StaticFiles(directory=settings.web_dir / "uplot", cache_control=IMMUTABLE)),
        Mount("/wheels", StaticFiles(directory=settings.web_dir / "wheels", cache_control=REVALIDATE)),
        Mount("/models", StaticFiles(directory=settings.models_dir, cache_control=REVALIDATE)),
        Mount("/", StaticFiles(directory=settings.browser_dir, cache_control=REVALIDATE, html=True)),
    ]
    return Starlette(routes=routes, middleware=[Middleware(CrossOriginIsolation)], lifespan=lifespan)
