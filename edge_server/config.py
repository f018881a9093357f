"""Every path, address and limit the servers use, in one place, with defaults that work."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    browser_dir: Path = REPO / "browser"
    web_dir: Path = REPO / "build" / "web"  # what `strata provision` lays out
    cache_dir: Path = REPO / "build" / "cache"  # downloads kept for fast, offline re-runs
    max_frame_bytes: int = 8 * 1024 * 1024  # largest WebSocket frame the edge accepts
    max_probe_reply_bytes: int = 4 * 1024 * 1024  # largest downlink probe a ping may ask for

    @property
    def assets_file(self) -> Path:
        return self.web_dir / "assets.json"
