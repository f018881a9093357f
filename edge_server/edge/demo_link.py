"""Demo mode: the page may switch the emulated link it is served through.

`strata serve --emulate wifi` puts the link emulator in front of the edge. The page
cannot reach the emulator's control port (another origin, and cross-origin isolated
pages fetch nothing cross-origin), so the edge relays two calls to it:

    GET /demo/link          {"enabled": true, ...the current profile}, or {"enabled": false}
    PUT /demo/link/{name}   switch to a named profile (wifi, 4g, 3g, offline)

The page's own requests cross the emulated link, so once it is `offline` the page could
never switch it back: offline lasts OFFLINE_S seconds, then the previous profile returns.
Going offline cuts every connection, the one carrying the reply too, so the switch comes
OFFLINE_GRACE_S after the reply ({"name": "offline", "in_s", "back_to", "after_s"}); the
page then reads the real profile back with GET.
"""

from __future__ import annotations

import asyncio

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

OFF = "demo mode is off: start the server with `strata serve --emulate wifi` to emulate the link"
OFFLINE_S = 10.0
OFFLINE_GRACE_S = 1.0  # the reply crosses the slowest profile (3g: 150 ms each way, and a handshake) well within it


def demo_routes(control_url: str | None) -> list[Route]:
    tasks: set[asyncio.Task] = set()

    async def relay(method: str, path: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=control_url, timeout=5.0) as client:
            return await client.request(method, path)

    async def offline_then_back(profile: str) -> None:
        await asyncio.sleep(OFFLINE_GRACE_S)
        await relay("PUT", "/profile/offline")
        await asyncio.sleep(OFFLINE_S)
        await relay("PUT", f"/profile/{profile}")

    async def current(request: Request) -> Response:
        if control_url is None:  # not an error: the page asks to know whether to offer the control
            return JSONResponse({"enabled": False, "hint": OFF})
        try:
            answer = await relay("GET", "/profile")
        except httpx.HTTPError as exc:
            return JSONResponse({"error": f"the link emulator did not answer: {exc}"}, status_code=502)
        return JSONResponse({"enabled": True, **answer.json()}, status_code=answer.status_code)

    async def switch(request: Request) -> Response:
        if control_url is None:
            return JSONResponse({"error": OFF}, status_code=404)
        name = request.path_params["name"]
        for task in tasks:  # a new choice overrides an offline spell still to come
            task.cancel()
        try:
            before = (await relay("GET", "/profile")).json()["name"]
            if name == "offline" and before != "offline":
                task = asyncio.ensure_future(offline_then_back(before))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                return JSONResponse({"name": "offline", "in_s": OFFLINE_GRACE_S, "back_to": before,
                                     "after_s": OFFLINE_S})
            answer = await relay("PUT", f"/profile/{name}")
        except httpx.HTTPError as exc:
            return JSONResponse({"error": f"the link emulator did not answer: {exc}"}, status_code=502)
        return Response(answer.content, answer.status_code, media_type="application/json")

    return [Route("/demo/link", current), Route("/demo/link/{name}", switch, methods=["PUT"])]
