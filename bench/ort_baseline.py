"""The onnxruntime-web baseline: the full model in a Web Worker, as a web developer would.

bench/web/ort.html and ort_worker.js are the whole app: they import onnxruntime-web
1.30.0 from the edge (/ort/, what `strata provision` lays out), fetch the model's
full.onnx from /models/, and classify the same input tensors Strata's worker runs. The
two files and the tensors come from the bench itself, the runtime and the model from the
edge, through the link emulator when there is one.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from playwright.sync_api import BrowserContext, Page
from strata.preprocess import prepare

WEB = Path(__file__).resolve().parent / "web"
PREFIX = "/bench-ort/"


@dataclass(frozen=True)
class Inputs:
    """A model's sample input tensors (batch first) and their reference labels."""

    tensors: np.ndarray
    labels: np.ndarray

    @property
    def shape(self) -> list[int]:
        return [1, *self.tensors.shape[1:]]


def model_inputs(models_dir: Path) -> Inputs:
    """What full.onnx takes for each shipped sample: the split models' samples.npz holds
    input tensors already; our model's holds 28x28 pictures, prepared as the worker does."""
    manifest = json.loads((models_dir / "manifest.json").read_text())
    with np.load(models_dir / "samples.npz") as samples:
        images, labels = samples["images"], samples["labels"]
    if "raw_size" in manifest["input"]:
        images = prepare(images, manifest["input"]["mean"], manifest["input"]["std"])
    return Inputs(np.ascontiguousarray(images, np.float32), labels.astype(np.int64))


def open_page(context: BrowserContext, origin: str, inputs: Inputs, timeout_s: float = 300) -> Page:
    """Load the baseline in a tab on the edge's origin; return it once its first answer is in
    (raise on its error). The tab's document is a page the edge does not have (a 404, with
    the edge's cross-origin isolation headers), replaced by ort.html: no request routing,
    which would turn the HTTP cache off and make a warm start cold."""
    page = context.new_page()
    page.goto(origin + PREFIX)
    source = (WEB / "ort_worker.js").read_text()
    page.set_content((WEB / "ort.html").read_text().replace("WORKER_SOURCE", json.dumps(source)))
    config = {"model": "/models/full.onnx", "shape": inputs.shape,
              "inputs": base64.b64encode(inputs.tensors.tobytes()).decode()}
    page.evaluate("config => window.ortBench.start(config)", config)
    page.wait_for_selector("body[data-ready=true], body[data-error]", state="attached", timeout=timeout_s * 1000)
    error = page.get_attribute("body", "data-error")
    if error:
        raise RuntimeError(f"the onnxruntime-web baseline failed: {error}")
    return page


def classify(page: Page, index: int) -> dict:
    """One sample through the full model: {ms (in the worker), label, page_ms (in the page,
    from the call to the answer, as Strata's page is timed)}."""
    return page.evaluate("""async (index) => {
      const begin = performance.now();
      const result = await window.ortBench.run(index);
      return { ...result, page_ms: performance.now() - begin };
    }""", index)
