"""The Python the worker loads, derived reproducibly from verified inputs: Pyodide's
official standard library and lock file, numpy's official wheel (browser_runtime.py
checks each against its pin or the lock) and shared/strata.

    numpy's extension modules   the three `import numpy` loads, one file each: the worker
                                compiles them with WebAssembly.compileStreaming, so the
                                browser keeps their compiled code (the other 16 in the
                                wheel, numpy.random's and numpy.fft's among them, are left out)
    site-packages zip           numpy's Python files but for the subpackages Strata never
                                imports (LEFT_OUT), and strata's
    standard library zip        only the modules the worker's Python imported, once it
                                also imported every module its files (numpy's and strata's
                                too) name anywhere (snapshot.py surveys them), with
                                Pyodide's own packages
    lock file                   pyodide-lock.json without its packages: the worker loads
                                none through Pyodide

The zips are stored, not deflated: the edge sends them brotli- or gzip-compressed whole,
which compresses across files.
"""

from __future__ import annotations

import ast
import io
import json
import zipfile

from edge_server.provision.archive import zip_bytes
from edge_server.provision.wheel import package_files

# numpy's extension modules that `import numpy` loads; _multiarray_tests because numpy's
# docstring setup imports it. The survey (snapshot.py) fails if the interpreter needs another.
NUMPY_LIBRARIES = [
    "numpy/_core/_multiarray_umath.cpython-312-wasm32-emscripten.so",
    "numpy/_core/_multiarray_tests.cpython-312-wasm32-emscripten.so",
    "numpy/linalg/_umath_linalg.cpython-312-wasm32-emscripten.so",
]
# Parts of numpy that Strata never imports: not shipped.
LEFT_OUT = ["numpy/f2py/", "numpy/testing/", "numpy/random/", "numpy/fft/", "numpy/typing/", "numpy/_pyinstaller/",
            "numpy/distutils/", "numpy/conftest.py"]
# Pyodide's own packages, which it imports by name as needed: kept whole.
PYODIDE_PACKAGES = ("pyodide/", "_pyodide/")


def imported_names(sources: dict[str, bytes]) -> list[str]:
    """Every module that Python files (path -> source) import by absolute name, anywhere
    in them (inside functions too): what they could import later, which the survey
    imports so that the trimmed standard library holds it and all it imports in turn."""
    names = set()
    for path, source in sources.items():
        if not path.endswith(".py"):
            continue
        for node in ast.walk(ast.parse(source, path)):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
    return sorted(names)


def numpy_library(wheel: bytes, path: str) -> bytes:
    """One extension module (a path in NUMPY_LIBRARIES) from numpy's wheel."""
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        return archive.read(path)


def site_packages(wheel: bytes) -> dict[str, bytes]:
    """The site-packages files: numpy's Python files (LEFT_OUT left out), an empty file
    in place of each extension module in NUMPY_LIBRARIES (the worker loads them itself;
    Python's import finds the file, then the library loaded under its path) and strata's
    files."""
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()
                   if name.startswith("numpy/") and name.endswith(".py") and not name.startswith(tuple(LEFT_OUT))}
    entries.update({path: b"" for path in NUMPY_LIBRARIES})
    entries.update(package_files())
    return entries


def _compiled(compiled: bytes, kind: str) -> dict[str, bytes]:
    """The pycs of one kind (stdlib, site-packages) in the survey's zip, by path (x/y.pyc)."""
    with zipfile.ZipFile(io.BytesIO(compiled)) as archive:
        return {name.removeprefix(f"{kind}/"): archive.read(name) for name in archive.namelist()
                if name.startswith(f"{kind}/")}


def stdlib_zip(compiled: bytes, modules: list[str]) -> bytes:
    """The standard library, compiled, with only `modules` (dotted names; those not in it
    are skipped) and Pyodide's own packages."""
    pycs = _compiled(compiled, "stdlib")
    wanted = {candidate for module in modules
              for candidate in (module.replace(".", "/") + ".pyc", module.replace(".", "/") + "/__init__.pyc")}
    return zip_bytes({name: pyc for name, pyc in pycs.items() if name in wanted or name.startswith(PYODIDE_PACKAGES)},
                     deflate=False)


def site_packages_zip(compiled: bytes) -> bytes:
    """The site-packages files, compiled, with the empty files in place of the libraries."""
    return zip_bytes({**_compiled(compiled, "site-packages"), **{path: b"" for path in NUMPY_LIBRARIES}},
                     deflate=False)


def cut_lock(lock: bytes) -> bytes:
    """pyodide-lock.json with its `info` (Pyodide checks the version) and no packages."""
    return json.dumps({"info": json.loads(lock)["info"], "packages": {}}, indent=1, sort_keys=True).encode()
