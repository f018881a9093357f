"""Every path, address and limit the servers use, in one place, with defaults that work.

Environment variables override the defaults (handy under a process manager); command
line flags override both. A limit that cannot work (a batch of 0, a negative timeout)
raises ValueError naming it, which the commands print as a one-line error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _env(name: str, default: str | None) -> str | None:
    return os.environ.get(f"STRATA_{name}", default)


def _env_list(name: str) -> tuple[str, ...]:
    return tuple(item for item in (_env(name, "") or "").split(",") if item)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    browser_dir: Path = REPO / "browser"
    web_dir: Path = REPO / "build" / "web"  # what `strata provision` lays out
    cache_dir: Path = REPO / "build" / "cache"  # downloads kept for fast, offline re-runs
    models_dir: Path = field(default_factory=lambda: Path(_env("MODELS_DIR", str(REPO / "models"))))
    max_frame_bytes: int = 8 * 1024 * 1024  # largest WebSocket frame the edge accepts
    max_tensor_bytes: int = 64 * 1024 * 1024  # largest INFER tensor once decoded (float32), "+z" inflated
    max_probe_reply_bytes: int = 4 * 1024 * 1024  # largest downlink probe a ping may ask for
    max_in_flight: int = 16  # requests one connection may have outstanding at the edge
    max_connections: int = 256  # WebSocket connections open at once; more are closed with 1013
    # Replies built but not yet taken by the socket, all connections together (one may
    # hold twice max_probe_reply_bytes); probes past it get ERROR busy.
    max_queued_reply_bytes: int = 64 * 1024 * 1024
    # A request's HTTP headers must arrive within this; a WebSocket client must answer the
    # keepalive ping within it (it cannot while a frame of its own is half sent).
    read_timeout_s: float = 10.0
    # Browser origins allowed on the WebSocket besides the server's own (comma-separated).
    allowed_origins: tuple[str, ...] = field(default_factory=lambda: _env_list("ALLOWED_ORIGINS"))
    # Host names (and addresses) this edge answers to besides 127.0.0.1, localhost and the
    # address it binds: anything else is refused, against DNS rebinding (comma-separated).
    allowed_hosts: tuple[str, ...] = field(default_factory=lambda: _env_list("ALLOWED_HOSTS"))
    cloud_url: str | None = field(default_factory=lambda: _env("CLOUD_URL", None))  # None: start our own
    cloud_token: str | None = field(default_factory=lambda: _env("CLOUD_TOKEN", None))
    cloud_timeout_s: float = 5.0
    cloud_probe_timeout_s: float = 1.0  # a health probe slower than this counts as failed
    cloud_failures_to_open: int = 3  # timeouts or failed probes in a row that mark the cloud down
    cloud_max_body_bytes: int = 64 * 1024 * 1024  # largest request body the cloud reads
    # The cloud's suffixes held joined into one graph each, by their block files' bytes
    # (edge_server/cloud/suffixes.py); the others run as chains of the block sessions.
    cloud_joined_bytes: int = 256 * 1024 * 1024
    # Demo mode: the control API of the link emulator in front of this edge, if any.
    link_control_url: str | None = field(default_factory=lambda: _env("LINK_CONTROL_URL", None))
    workers: int = 2  # edge threads running blocks (onnxruntime releases the GIL)
    cloud_concurrency: int = 4  # cloud forwards in flight at once; more wait and are batched
    max_batch: int = 32  # 1 turns dynamic batching off
    max_wait_ms: float = 0.0  # extra hold for company before a batch starts
    variant_cache_bytes: int = 8 * 1024 * 1024  # pruned variants kept loaded (block file bytes), LRU
    # On SIGTERM, the longest wait for the frames in flight: above the cloud's timeout, so
    # that a forward waiting for a slow cloud still gets its reply (edge_server/edge/drain.py).
    shutdown_timeout_s: float = 10.0
    # TLS (https, wss): a certificate chain and its key, PEM; None serves plain http.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Where `strata serve --tls-self-signed` keeps its certificate.
    tls_dir: Path = field(default_factory=lambda: Path(_env("TLS_DIR", str(REPO / "build" / "tls"))))

    def __post_init__(self) -> None:
        at_least_one = ("max_frame_bytes", "max_tensor_bytes", "max_in_flight", "max_connections",
                        "max_queued_reply_bytes", "cloud_failures_to_open", "cloud_max_body_bytes", "workers",
                        "cloud_concurrency", "max_batch")
        for name in at_least_one:
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("read_timeout_s", "cloud_timeout_s", "cloud_probe_timeout_s", "shutdown_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name.replace('_', '-')} must be more than 0, got {getattr(self, name)}")
        for name in ("max_probe_reply_bytes", "max_wait_ms", "variant_cache_bytes", "cloud_joined_bytes"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name.replace('_', '-')} must be 0 or more, got {getattr(self, name)}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate (--tls-cert) and its key (--tls-key)")

    @property
    def assets_file(self) -> Path:
        return self.web_dir / "assets.json"
