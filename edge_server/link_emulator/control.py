"""The link emulator's control API: switch its profile, stall or cut it, read its counters.

A small Starlette app; `strata link` serves it on its own loopback port.

    GET  /profile          the current profile
    PUT  /profile/{name}   switch to a named profile (404 lists the names)
    POST /profile          switch to a custom profile given as JSON (400 says what is wrong)
    POST /stall            hold all data until /resume
    POST /resume
    POST /cut              drop every open connection
    GET  /stats            bytes delivered per direction, connections

A profile in JSON has the fields of Profile and Link, in bits per second and seconds:
{"name": "slow", "up": {"rate_bps": 2e6, "delay_s": 0.1, "jitter_s": 0.02},
 "down": {"rate_bps": null, "delay_s": 0.1}, "offline": false}; a null rate is unlimited.
"""

from __future__ import annotations

import dataclasses
import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from edge_server.link_emulator.proxy import PROFILES, Link, LinkEmulator, Profile


def profile_from_json(data: object) -> Profile:
    """Build a Profile from parsed JSON; the ValueError names the field at fault."""
    fields = _fields(data, "profile", required={"up", "down"}, optional={"name", "offline"})
    name = fields.get("name", "custom")
    offline = fields.get("offline", False)
    if not isinstance(name, str) or not name:
        raise ValueError(f"profile.name must be a non-empty string, got {name!r}")
    if not isinstance(offline, bool):
        raise ValueError(f"profile.offline must be true or false, got {offline!r}")
    return Profile(name, _link(fields["up"], "up"), _link(fields["down"], "down"), offline)


def _link(data: object, where: str) -> Link:
    fields = _fields(data, where, required={"rate_bps", "delay_s"}, optional={"jitter_s"})
    for key, value in fields.items():
        if key == "rate_bps" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}.{key} must be a number, got {value!r}")
    try:
        return Link(**fields)
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}") from None


def _fields(data: object, where: str, required: set[str], optional: set[str]) -> dict:
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a JSON object, got {json.dumps(data)}")
    if missing := required - data.keys():
        raise ValueError(f"{where} lacks {', '.join(sorted(missing))}")
    if unknown := data.keys() - required - optional:
        raise ValueError(f"{where} has unknown field(s) {', '.join(sorted(unknown))}; "
                         f"expected {', '.join(sorted(required | optional))}")
    return data


def create_control_app(emulator: LinkEmulator) -> Starlette:
    """The control API over one emulator; serve it in the emulator's event loop."""

    def profile_response(profile: Profile) -> JSONResponse:
        return JSONResponse(dataclasses.asdict(profile))

    async def get_profile(request: Request) -> JSONResponse:
        return profile_response(emulator.profile)

    async def put_profile(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        if name not in PROFILES:
            return JSONResponse({"error": f"no link profile named {name!r}", "profiles": list(PROFILES)}, 404)
        return profile_response(emulator.set_profile(name))

    async def post_profile(request: Request) -> JSONResponse:
        try:
            profile = profile_from_json(json.loads(await request.body()))
        except ValueError as exc:  # json.JSONDecodeError is one too
            return JSONResponse({"error": f"bad profile: {exc}"}, 400)
        return profile_response(emulator.set_profile(profile))

    async def stall(request: Request) -> JSONResponse:
        emulator.stall()
        return JSONResponse({"stalled": True})

    async def resume(request: Request) -> JSONResponse:
        emulator.resume()
        return JSONResponse({"stalled": False})

    async def cut(request: Request) -> JSONResponse:
        return JSONResponse({"cut": emulator.cut()})

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(emulator.stats())

    return Starlette(routes=[
        Route("/profile", get_profile, methods=["GET"]),
        Route("/profile", post_profile, methods=["POST"]),
        Route("/profile/{name}", put_profile, methods=["PUT"]),
        Route("/stall", stall, methods=["POST"]),
        Route("/resume", resume, methods=["POST"]),
        Route("/cut", cut, methods=["POST"]),
        Route("/stats", stats, methods=["GET"]),
    ])
