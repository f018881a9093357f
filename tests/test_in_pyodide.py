"""The shared tests again, inside Pyodide under Node: the browser's Python, without a browser."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from edge_server.config import REPO, Settings
from edge_server.provision.browser_runtime import PYODIDE_VERSION
from edge_server.provision.wheel import wheel_bytes

SHARED_TESTS = sorted((Path(__file__).parent / "shared").glob("test_*.py"))
RUNNER = Path(__file__).parent / "pyodide" / "run_shared_tests.mjs"


@pytest.fixture(scope="module")
def pyodide_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    index = Settings().web_dir / "pyodide" / PYODIDE_VERSION
    if not (index / "pyodide.asm.wasm").is_file():
        pytest.fail(f"Pyodide is not provisioned in {index}: run `make provision`")
    if shutil.which("node") is None:
        pytest.fail("node is not on PATH: install Node.js 20 (Debian package nodejs)")
    wheel = tmp_path_factory.mktemp("wheel") / "strata-0.0.0-py3-none-any.whl"
    wheel.write_bytes(wheel_bytes())  # always the current code, not the last provisioned wheel
    command = ["node", str(RUNNER), str(index), str(wheel), str(REPO), *map(str, SHARED_TESTS)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    # Pyodide prints whole minified source lines in its tracebacks; keep the readable ones.
    readable = "\n".join(line for line in done.stderr.splitlines() if len(line) < 400)
    assert done.returncode == 0, f"the Pyodide runner failed:\n{readable[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", SHARED_TESTS, ids=lambda path: path.name)
def test_shared_module_passes_in_pyodide(pyodide_results: dict, module: Path) -> None:
    outcomes = pyodide_results[str(module)]
    assert outcomes, f"{module.name} defines no test functions"
    failed = {name: error for name, error in outcomes.items() if error != "ok"}
    assert not failed, "\n".join(f"{name}:\n{error}" for name, error in failed.items())
