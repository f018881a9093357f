"""The worker's Python run under Node 20 at provision time (snapshot.mjs), started as the
browser starts it (browser/boot.mjs): once to survey the modules it imports, once to take
a memory snapshot of the interpreter after numpy, strata and browser/worker.py are
imported, which the worker restores instead of starting Python (about 0.3 s instead of
2-3 s).

What the snapshot holds: Python's heap and numpy's static data, with worker.py's
definitions and nothing of a session (no socket, no model: worker.js loads those after
restoring). Pyodide's own JS objects that its modules keep are named by key (boot.mjs).
Entropy, the clock and Python's hash seed are fixed while it is taken, so the same inputs
give the same bytes; Python's `random` is re-seeded after each restore (worker.js).

Each result is kept with the sha256 of everything it was made from and made again only
when one of those changes (a survey and a snapshot take about 5 s each).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "snapshot.mjs"
# What the lazy imports of the first requests need (np.load of the samples reads a zip),
# imported before the survey and the snapshot so that both see them.
WARM_UP = """
import io
import numpy as np
_buffer = io.BytesIO()
np.savez(_buffer, x=np.zeros(2, np.float32))
_buffer.seek(0)
with np.load(_buffer) as _loaded:
    _loaded["x"].sum()
del _buffer, _loaded
"""


class SnapshotError(RuntimeError):
    """Node could not run the worker's Python; the message has its output."""


def inputs_key(paths: list[Path]) -> str:
    """One sha256 over the contents of `paths` (and of this module, the script and the
    warm-up): a result made from them is still good while this stays the same."""
    digest = hashlib.sha256(WARM_UP.encode())
    for path in [Path(__file__), SCRIPT, *paths]:
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def run_node(config: dict) -> dict:
    """Run snapshot.mjs with `config`; its JSON answer. Raise SnapshotError with the
    readable part of its output if it fails."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        json.dump({**config, "warm_up": WARM_UP}, file)
        file.flush()
        try:
            done = subprocess.run(["node", str(SCRIPT), file.name], capture_output=True, text=True, timeout=600)
        except FileNotFoundError:
            raise SnapshotError("node is not on PATH: install Node.js 20 (Debian package nodejs)") from None
    if done.returncode != 0:
        # Pyodide's traces quote whole minified lines of about 1 MB: keep the readable ones.
        readable = "\n".join(line for line in done.stderr.splitlines() if len(line) < 400)
        raise SnapshotError(f"node {SCRIPT.name} ({config['mode']}) exited {done.returncode}:\n{readable[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
