"""Lay out the worker's Python under build/web/runtime/, served as /runtime/: numpy's
extension modules, the site-packages and standard library zips, the cut lock file
(python_files.py) and the memory snapshot (snapshot.py). Every name carries its content's
hash, so the files are cached as immutable; older ones are deleted.
"""

from __future__ import annotations

import json
from pathlib import Path

from edge_server.config import Settings
from edge_server.provision import python_files
from edge_server.provision.archive import zip_bytes
from edge_server.provision.served import BROTLI_FAST, asset, content_addressed, remove_stale, sha256
from edge_server.provision.snapshot import inputs_key, run_node

URL = "/runtime/"
# The worker's own Python, served from browser/ (as the page is): worker.py runs, the
# modules are written next to it for it to import.
MAIN = "worker.py"
MODULES = ["ort_web.py"]
BOOT = "boot.mjs"  # browser/boot.mjs: how both the worker and snapshot.mjs start Python


def lay_worker_python(settings: Settings, runtime: Path, numpy_wheel: Path) -> dict:
    """Write what is missing or changed; return assets.json's "python" entry."""
    folder = settings.web_dir / "runtime"
    wheel = numpy_wheel.read_bytes()
    libraries = {path: content_addressed(folder, Path(path).name, python_files.numpy_library(wheel, path))
                 for path in python_files.NUMPY_LIBRARIES}
    sources = python_files.site_packages(wheel)
    site_sources = content_addressed(folder, "site-packages-source.zip", zip_bytes(sources, deflate=False))
    lock = content_addressed(folder, "pyodide-lock.json", python_files.cut_lock((runtime / "pyodide-lock.json").read_bytes()))
    browser = [settings.browser_dir / name for name in (BOOT, MAIN, *MODULES)]
    candidates = python_files.imported_names({**sources, **{path.name: path.read_bytes() for path in browser}})
    pinned = [runtime / name for name in ("pyodide.mjs", "pyodide.asm.js", "pyodide.asm.wasm")]
    config = {"index_dir": str(runtime), "boot": str(settings.browser_dir / BOOT), "lock": str(lock),
              "main": str(settings.browser_dir / MAIN),
              "modules": {name: str(settings.browser_dir / name) for name in MODULES},
              "libraries": [{"path": path, "file": str(file)} for path, file in libraries.items()]}
    provenance_file = folder / "provenance.json"
    provenance = json.loads(provenance_file.read_text()) if provenance_file.is_file() else {}
    partial = folder / "node-output.partial"

    def remembered(step: str, inputs: list[Path], config: dict) -> dict:
        """Run a step under Node unless its inputs are those of the result kept in
        provenance.json (and its file is there); keep its output file under its hash."""
        key, known = inputs_key(inputs), provenance.get(step, {})
        if known.get("key") != key or not (folder / known.get("file", "")).is_file():
            made = run_node({**config, "mode": step, "out": str(partial)})
            path = content_addressed(folder, config["name"], partial.read_bytes())
            partial.unlink()
            provenance[step] = {"key": key, **made, "file": path.name}
            provenance_file.write_text(json.dumps(provenance, indent=1))
        return provenance[step]

    full_stdlib = runtime / "python_stdlib.zip"
    made_from = [*pinned, *libraries.values(), lock, *browser]
    survey = remembered("survey", [*made_from, site_sources, full_stdlib],
                        {**config, "name": "compiled.zip", "stdlib": str(full_stdlib), "site_packages": str(site_sources),
                         "candidates": candidates})
    compiled = (folder / survey["file"]).read_bytes()
    stdlib = content_addressed(folder, "python_stdlib.zip", python_files.stdlib_zip(compiled, survey["modules"]))
    site = content_addressed(folder, "site-packages.zip", python_files.site_packages_zip(compiled))
    snapshot = remembered("snapshot", [*made_from, site, stdlib],
                          {**config, "name": "snapshot.bin", "stdlib": str(stdlib), "site_packages": str(site)})
    snapshot_path = folder / snapshot["file"]
    remove_stale(folder, [*libraries.values(), site_sources, lock, folder / survey["file"], stdlib, site, snapshot_path,
                          provenance_file])
    return {
        "main": MAIN, "modules": MODULES,
        "stdlib": asset(stdlib, URL + stdlib.name),
        "lock": asset(lock, URL + lock.name),
        "libraries": [asset(file, URL + file.name, path=path) for path, file in libraries.items()],
        "site_packages": asset(site, URL + site.name),
        # Not part of a cold start: fetched after the first answer, restored on the next load
        # if worker.py and its modules are still the ones it was taken with.
        "snapshot": asset(snapshot_path, URL + snapshot_path.name, BROTLI_FAST, table_bases=snapshot["table_bases"],
                          inputs={path.name: sha256(path) for path in browser if path.name != BOOT}),
    }
