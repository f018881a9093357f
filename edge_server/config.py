"""Every path, address and limit the servers use, in one place, with defaults that work.

Environment variables override the defaults (handy under a process manager); command
line flags override both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _env(name: str, default: str | None) -> str | None:
    return os.environ.get(f"STRATA_{name}", default)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    browser_dir: Path = REPO / "browser"
    web_dir: Path = REPO / "build" / "web"  # what `strata provision` lays out
    cache_dir: Path = REPO / "build" / "cache"  # downloads kept for fast, offline re-runs
    models_dir: Path = field(default_factory=lambda: Path(_env("MODELS_DIR", str(REPO / "models"))))
    max_frame_bytes: int = 8 * 1024 * 1024  # largest WebSocket frame the edge accepts
    max_probe_reply_bytes: int = 4 * 1024 * 1024  # largest downlink probe a ping may ask for
    max_in_flight: int = 16  # requests one connection may have outstanding at the edge
    # Browser origins allowed on the WebSocket besides the server's own (comma-separated).
    allowed_origins: tuple[str, ...] = field(
        default_factory=lambda: tuple(o for o in (_env("ALLOWED_ORIGINS", "") or "").split(",") if o))
    cloud_url: str | None = field(default_factory=lambda: _env("CLOUD_URL", None))  # None: start our own
    cloud_token: str | None = field(default_factory=lambda: _env("CLOUD_TOKEN", None))
    cloud_timeout_s: float = 5.0
    # Demo mode: the control API of the link emulator in front of this edge, if any.
    link_control_url: str | None = field(default_factory=lambda: _env("LINK_CONTROL_URL", None))
    workers: int = 2  # edge threads running blocks (onnxruntime releases the GIL)
    cloud_concurrency: int = 4  # cloud forwards in flight at once; more wait and are batched
    max_batch: int = 32  # 1 turns dynamic batching off
    max_wait_ms: float = 0.0  # extra hold for company before a batch starts
    variant_cache_bytes: int = 8 * 1024 * 1024  # pruned variants kept loaded (block file bytes), LRU

    @property
    def assets_file(self) -> Path:
        return self.web_dir / "assets.json"
