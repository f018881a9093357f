"""The pruned variants of the model a server can run, verified, profiled and cached.

models/manifest.json lists them under "variants" (`strata prune` writes them): each is
a folder laid out like models/ with its own manifest. At start-up every variant is
verified (the manifest's sha256 in the base manifest, then each file's) and profiled.
One that fails is refused with the reason and left out of HELLO, so no plan asks for
it, and requests go on with the others. The unpruned model ("") is always loaded; the
variants stay loaded within a memory budget, least recently used out first, and load
again on demand.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_server.blocks.main_path import MainPath, ModelError

log = logging.getLogger("strata.variants")


@dataclass(frozen=True)
class VariantInfo:
    """What a server tells the planner about one variant, whether loaded or not."""

    block_ms: list[float]
    cut_shapes: list[tuple[int, ...]]
    bytes: int  # its block files: what holding it loaded costs, roughly


def _bytes(path: MainPath) -> int:
    return sum(block["bytes"] for block in path.blocks)


class Variants:
    def __init__(self, base: MainPath, max_bytes: int, threads: int = 1) -> None:
        self.base, self.max_bytes, self.threads = base, max_bytes, threads
        self.info: dict[str, VariantInfo] = {"": VariantInfo(base.profile(), base.cut_shapes, _bytes(base))}
        self.refused: dict[str, str] = {}  # name -> why it is not served
        self._dirs: dict[str, Path] = {}
        self._loaded: OrderedDict[str, MainPath] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()  # runs come from the edge's worker threads
        self.loads = 0  # variants loaded from disk, start-up included
        for entry in base.manifest.get("variants", []):
            self._admit(entry)

    def _admit(self, entry: dict) -> None:
        name, folder = entry["name"], self.base.dir / entry["dir"]
        try:
            manifest = folder / "manifest.json"
            advice = "restore models/ from the repo or run `strata prune`"
            if not manifest.is_file():
                raise ModelError(f"{manifest} is missing; {advice}")
            digest = hashlib.sha256(manifest.read_bytes()).hexdigest()
            if digest != entry["manifest_sha256"]:
                raise ModelError(f"{manifest} has sha256 {digest}, but {self.base.dir / 'manifest.json'} expects "
                                 f"{entry['manifest_sha256']}; {advice}")
            path = self._load(name, folder)
        except (ModelError, OSError, ValueError) as exc:
            self._refuse(name, exc)
            return
        if len(path) != len(self.base) or path.cut_shapes[1] != self.base.cut_shapes[1]:
            self.refused[name] = (f"variant {name!r} refused: it must keep the {len(self.base)} blocks and conv1 of "
                                  f"the base model, so that one browser bundle serves every variant")
            return
        self._dirs[name] = folder
        self.info[name] = VariantInfo(path.profile(), path.cut_shapes, _bytes(path))
        with self._lock:
            self._keep(name, path)

    def _refuse(self, name: str, exc: Exception) -> None:
        self.refused[name] = f"variant {name!r} refused: {exc}"
        self.info.pop(name, None)
        log.error("%s", self.refused[name])

    def _load(self, name: str, folder: Path) -> MainPath:
        self.loads += 1
        return MainPath(folder, self.threads)

    def _keep(self, name: str, path: MainPath) -> None:
        """Hold a loaded variant, then drop the least recently used ones over the budget."""
        self._loaded[name] = path
        self._loaded.move_to_end(name)
        while len(self._loaded) > 1 and sum(_bytes(p) for p in self._loaded.values()) > self.max_bytes:
            dropped, _ = self._loaded.popitem(last=False)
            log.info("variant %s unloaded (cache over %d bytes)", dropped, self.max_bytes)

    @property
    def names(self) -> list[str]:
        return list(self.info)

    @property
    def loaded(self) -> list[str]:
        return list(self._loaded)

    def get(self, name: str) -> MainPath:
        """The variant's blocks, loaded now if the cache had dropped them. If that fails
        (its files changed since start-up), the variant is refused from then on."""
        if name == "":
            return self.base
        if name not in self.info:
            raise KeyError(f"no variant {name!r}: {self.refused.get(name, 'not in the manifest')}")
        with self._lock:
            path = self._loaded.get(name)
            if path is None:
                try:
                    path = self._load(name, self._dirs[name])
                except (ModelError, OSError, ValueError) as exc:
                    self._refuse(name, exc)
                    raise ModelError(self.refused[name]) from exc
            self._keep(name, path)
            return path

    def run(self, x: np.ndarray, start: int, stop: int, variant: str = "") -> np.ndarray:
        return self.get(variant).run(x, start, stop)
