"""The cloud's suffixes, blocks [k, N) of a main path, served without N graphs built up front.

The cloud used to join every suffix into one graph and one onnxruntime session at
start-up: N graphs holding N(N+1)/2 blocks' weights between them, 4.4 GB and 90 s before
it was ready for a 111-block `strata split --all-cuts` model. Now:

- A suffix runs at once as the chain of the main path's block sessions, which the server
  loads anyway (to verify and profile the blocks): memory linear in the blocks, ready as
  soon as they load, and correct from the first request.
- Its joined graph is built on its first request, in a background thread (one build at
  a time), and kept while the joined suffixes' block files total at most `budget_bytes`
  (Settings.cloud_joined_bytes), least recently used out first; a suffix larger than the
  budget alone stays chained. Joined, it runs as fast as before: one call instead of
  N - k, and onnxruntime optimizes across the blocks. Measured on the 7-block model at
  batch 1 on a busy 2-core machine: 0.60 ms joined against 0.95 ms chained from cut 0,
  0.40 against 0.44 ms from cut 3 (/tmp bench, `MainPath.run` against the joined session).

So a model of a few blocks ends up with every suffix joined, as fast as it always was,
and a model of a hundred blocks holds its blocks once plus the budget, whatever cuts the
edges ask for.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

import numpy as np
import onnxruntime as ort

from edge_server.blocks.graphs import INPUT
from edge_server.blocks.main_path import MainPath, session_options

log = logging.getLogger("strata.cloud")


class Suffixes:
    def __init__(self, paths: dict[str, MainPath], budget_bytes: int) -> None:
        """paths: the main path of each variant served ("" is the unpruned model)."""
        self.paths, self.budget_bytes = paths, budget_bytes
        self._joined: OrderedDict[tuple[str, int], ort.InferenceSession] = OrderedDict()  # LRU first
        self._building: set[tuple[str, int]] = set()  # asked for, not joined yet (or failed to join)
        self._lock = threading.Lock()
        self._one_build = threading.Lock()  # builds take turns: one graph's worth of memory in flight

    def bytes(self, variant: str, start: int) -> int:
        """Bytes of the block files of suffix [start, N): what joining it holds, roughly."""
        return sum(block["bytes"] for block in self.paths[variant].blocks[start:])

    @property
    def joined(self) -> list[tuple[str, int]]:
        """The suffixes (variant, start) held joined, least recently used first."""
        with self._lock:
            return list(self._joined)

    def run(self, x: np.ndarray, start: int, variant: str = "") -> np.ndarray:
        """Blocks [start, N) of a variant on a batch: joined if built, else chained (and
        the join starts in the background). Thread-safe."""
        key = (variant, start)
        with self._lock:
            session = self._joined.get(key)
            if session is not None:
                self._joined.move_to_end(key)
            elif key not in self._building and self.bytes(variant, start) <= self.budget_bytes:
                self._building.add(key)
                threading.Thread(target=self._join, args=(key,), name=f"join suffix {start}", daemon=True).start()
        if session is None:
            path = self.paths[variant]
            return path.run(x, start, len(path))
        return session.run(None, {INPUT: x})[0]

    def _join(self, key: tuple[str, int]) -> None:
        variant, start = key
        with self._one_build:
            try:
                graph = self.paths[variant].suffix(start).SerializeToString()
                session = ort.InferenceSession(graph, session_options(), providers=["CPUExecutionProvider"])
            except Exception:  # it stays chained, and is not tried again: the chain serves it
                log.exception("could not join suffix %d of %r; it runs as a chain of blocks", start, variant)
                return
        with self._lock:
            self._building.discard(key)
            self._joined[key] = session
            while sum(self.bytes(*k) for k in self._joined) > self.budget_bytes:
                dropped, _ = self._joined.popitem(last=False)
                log.info("suffix %d of %r unjoined (joined suffixes over %d bytes)", dropped[1], dropped[0],
                         self.budget_bytes)
