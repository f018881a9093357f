"""A real Triton Inference Server for the tests and benchmarks: installed from PyPI, run by PID.

The PyPI wheel nvidia-pytriton ships Triton's `tritonserver` binary and its Python backend,
CPU-only, but no ONNX Runtime backend, so it serves what `strata export-triton --backend
python` writes. Only the binary is used, never PyTriton's Python API (it fails on this
Python: ../shared/notes/triton.md). Everything lives under build/triton/:

    server/  the wheel's files (pip --target, without its dependencies: they serve PyTriton's
             API, which is not used, and the wheel's numpy<2 pin would clash with the project's)
    python/  a virtualenv for the models' model.py: numpy 1 and the project's onnxruntime.
             The backend stub is built against numpy 1: under numpy 2 it sent empty output
             tensors (measured), which the edge rightly refused.

`python -m testing.triton` installs it (`make test` does); install() does the same when
called and raises TritonUnavailable, with pip's words, when it cannot.
"""

from __future__ import annotations

import ctypes.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import onnxruntime

from edge_server.config import REPO
from edge_server.processes import stop, wait_for_http
from testing.servers import free_port

WHEEL = "nvidia-pytriton==0.7.0"  # Triton 2.51 (55 MB)
ROOT = REPO / "build" / "triton"
SERVER = ROOT / "server" / "pytriton" / "tritonserver"
PYTHON = ROOT / "python"
PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
READY_TIMEOUT_S = 120  # one Python per model starts and imports onnxruntime: 7 took 4 s here, CI may be busier


class TritonUnavailable(RuntimeError):
    """Triton could not be installed here; the text says why."""


def _pip(*args: str, python: str = sys.executable) -> None:
    done = subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise TritonUnavailable(f"pip install {' '.join(args)} failed: {done.stderr.strip()[-1500:]}")


def install() -> Path:
    """Install Triton and its models' Python once (a second call only checks); return the
    `tritonserver` binary. Raise TritonUnavailable if pip or this machine cannot."""
    done = ROOT / ".installed"
    spec = f"{WHEEL} onnxruntime=={onnxruntime.__version__} python{PYTHON_VERSION}"
    if not (done.is_file() and done.read_text() == spec):
        shutil.rmtree(ROOT, ignore_errors=True)
        _pip("--no-deps", "--target", str(ROOT / "server"), WHEEL)
        venv = subprocess.run([sys.executable, "-m", "venv", str(PYTHON)], capture_output=True, text=True)
        if venv.returncode != 0:
            raise TritonUnavailable(f"cannot make a virtualenv for the models' Python: {venv.stderr.strip()}")
        _pip("numpy<2", f"onnxruntime=={onnxruntime.__version__}", python=str(PYTHON / "bin" / "python"))
        stub = SERVER / "python_backend_stubs" / PYTHON_VERSION / "triton_python_backend_stub"
        if not stub.is_file():
            raise TritonUnavailable(f"{WHEEL} has no Python backend stub for Python {PYTHON_VERSION}")
        shutil.copy2(stub, SERVER / "backends" / "python")  # the backend runs the stub beside it
        done.write_text(spec)
    if ctypes.util.find_library(f"python{PYTHON_VERSION}") is None:  # the stub links the system's libpython
        raise TritonUnavailable(f"Triton's Python backend needs libpython{PYTHON_VERSION}.so "
                                f"(Debian package libpython{PYTHON_VERSION})")
    return SERVER / "bin" / "tritonserver"


@contextmanager
def triton_process(repository: Path, models: list[str]) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run tritonserver over `repository`, loading only `models` (explicit model control),
    with HTTP on a free loopback port and gRPC and metrics off; yield its URL and process
    once every model is ready, and stop it by its PID afterwards."""
    binary = install()
    port = free_port()
    command = [str(binary), f"--model-repository={repository}", f"--backend-directory={SERVER / 'backends'}",
               "--http-address=127.0.0.1", f"--http-port={port}", "--allow-grpc=false", "--allow-metrics=false",
               "--model-control-mode=explicit", *(f"--load-model={name}" for name in models),
               "--exit-timeout-secs=5"]
    # The stub embeds Python and takes its packages from the first `python3` on PATH.
    env = {**os.environ, "PATH": f"{PYTHON / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)
    url = f"http://127.0.0.1:{port}"
    with tempfile.NamedTemporaryFile("w+", prefix="strata-triton-", suffix=".log") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            # Triton listens once it has loaded the models, and exits if one fails to load.
            wait_for_http(f"{url}/v2/health/ready", process, timeout=READY_TIMEOUT_S, log=Path(log.name))
            if httpx.get(f"{url}/v2/health/ready").status_code != 200:
                raise RuntimeError(f"Triton is up but not ready:\n{Path(log.name).read_text()[-3000:]}")
            yield url, process
        finally:
            stop(process, timeout_s=15)


if __name__ == "__main__":
    try:
        print(f"Triton Inference Server installed: {install()}")
    except TritonUnavailable as exc:
        sys.exit(f"error: {exc}")
