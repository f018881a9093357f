"""The edge's ASGI app: the page, the worker's runtime files, and the WebSocket.

    /              browser/            the page and the worker scripts (revalidated)
    /assets.json   build/web/          what the worker loads, with sizes
    /pyodide/      build/web/pyodide/  Pyodide and numpy (versioned path, immutable)
    /wheels/       build/web/wheels/   the strata wheel (revalidated)
    /ws            WebSocket           frames of strata.wire, one EdgeSession each
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from edge_server.config import Settings
from edge_server.isolation import CrossOriginIsolation
from edge_server.session import EdgeSession
from edge_server.static import IMMUTABLE, REVALIDATE, StaticFiles


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()

    async def assets(request: Request) -> FileResponse:
        return FileResponse(settings.assets_file, headers={"Cache-Control": REVALIDATE})

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        session = EdgeSession(settings)
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes")
                await websocket.send_bytes(session.handle(data if data is not None else message.get("text")))
        except WebSocketDisconnect:
            return

    routes = [
        WebSocketRoute("/ws", socket),
        Route("/assets.json", assets),
        Mount("/pyodide", StaticFiles(directory=settings.web_dir / "pyodide", cache_control=IMMUTABLE)),
        Mount("/wheels", StaticFiles(directory=settings.web_dir / "wheels", cache_control=REVALIDATE)),
        Mount("/", StaticFiles(directory=settings.browser_dir, cache_control=REVALIDATE, html=True)),
    ]
    return Starlette(routes=routes, middleware=[Middleware(CrossOriginIsolation)])
