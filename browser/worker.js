// The Web Worker: starts Python with numpy and strata (browser/boot.mjs), runs
// browser/worker.py, then serves the page's calls into it. Every URL is on the edge server.
//
// Start-up (docs/architecture.md): every runtime file is fetched at once and checked
// against its sha256 in assets.json; the wasm (Pyodide's and numpy's) compiles while it
// downloads, and the browser keeps the compiled code for the next load. A load that
// finds Python's memory snapshot in Cache Storage restores it instead of starting Python
// and importing numpy, strata and worker.py; a load that does not, fetches the snapshot
// after its first answer, for the next one.
import { installPython, startPython } from "./boot.mjs";

const post = (type, data = {}) => self.postMessage({ type, ...data });
let pyodide = null;

// For Python (ort_web.py), which cannot write a dynamic import() itself.
self.importModule = (url) => import(url);

const hex = (buffer) => Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
const sha256 = async (bytes) => hex(await crypto.subtle.digest("SHA-256", bytes));
// assets.json's sha256 as fetch's integrity option: the browser checks the body against it.
const integrity = (sha) => `sha256-${btoa(String.fromCharCode(...sha.match(/../g).map((h) => parseInt(h, 16))))}`;

async function fetchChecked(asset, init = {}) {
  let response;
  try {
    response = await fetch(asset.url, { ...init, integrity: integrity(asset.sha256) });
  } catch (error) {
    throw new Error(`${asset.url}: ${error.message} (it must have sha256 ${asset.sha256}; run \`make provision\` on the server)`);
  }
  if (!response.ok) throw new Error(`${asset.url}: HTTP ${response.status}; run \`make provision\` on the server`);
  return response;
}

// Python's memory snapshot lives in Cache Storage, decoded: reading 25 MB back from there
// takes a fraction of what decompressing it from the HTTP cache does. (No Cache Storage
// outside secure contexts: such a page always starts Python.)
const SNAPSHOTS = "strata-python-snapshot";

// The snapshot, if this load may restore it: the one assets.json names (its URL changes
// with numpy, strata and the standard library), cached by an earlier load, still matching
// its sha256, and taken with this worker.py and these modules (`sources`, name -> bytes).
// Else null; a cached copy that fails its sha256 is deleted, so that only a good one
// (cached again after this load's first answer) is ever found under the URL.
async function cachedSnapshot(snapshot, sources) {
  if (!self.caches) return null;
  const cache = await caches.open(SNAPSHOTS);
  const [cached, ...digests] = await Promise.all([cache.match(snapshot.url), ...Object.values(sources).map(sha256)]);
  if (!cached || Object.keys(sources).some((name, i) => digests[i] !== snapshot.inputs[name])) return null;
  const bytes = new Uint8Array(await cached.arrayBuffer());
  if (await sha256(bytes) !== snapshot.sha256) {
    console.warn(`the cached Python snapshot does not match its sha256 ${snapshot.sha256}: starting Python`);
    await cache.delete(snapshot.url);
    return null;
  }
  return { bytes, table_bases: snapshot.table_bases };
}

// After the first answer, a load that started Python caches the snapshot for the next one.
let snapshotToCache = null;

async function cacheSnapshot(snapshot) {
  const cache = await caches.open(SNAPSHOTS);
  await cache.put(snapshot.url, await fetchChecked(snapshot, { priority: "low" }));
  const url = new URL(snapshot.url, self.location.href).href;
  await Promise.all((await cache.keys()).filter((request) => request.url !== url).map((old) => cache.delete(old)));
}

function cacheSnapshotOnce() {
  if (!snapshotToCache) return;
  const snapshot = snapshotToCache;
  snapshotToCache = null;
  cacheSnapshot(snapshot).catch((error) => console.warn(`the Python snapshot was not cached: ${error.message}`));
}

async function start(wsUrl) {
  const t0 = performance.now();
  const steps = {};
  const mark = (name, since) => { steps[name] = performance.now() - since; };

  const assets = await (await fetch("/assets.json")).json();
  const { pyodide: core, python } = assets;
  const files = [core.loader, core.script, core.wasm, python.stdlib, python.lock, ...python.libraries,
    python.site_packages];
  const total = files.reduce((n, a) => n + a.bytes, 0);
  const transferredTotal = files.reduce((n, a) => n + a.br_bytes, 0);
  let loaded = 0;
  let done = 0;
  // phase: the page's step (browser/startup.js): download, python, packages, model. The wasm
  // modules compile on while Python starts: their arrival then counts bytes, the step stays.
  let phase = "download";
  let step = "Downloading the runtime";
  const progress = (nextPhase, nextStep) => {
    [phase, step] = [nextPhase, nextStep];
    post("progress", { phase, step, loaded, total, transferredTotal });
  };
  const arrived = (asset) => (value) => {
    loaded += asset.bytes;
    done += 1;
    progress(phase, phase === "download" ? `Downloading the runtime (${done} of ${files.length} files)` : step);
    return value;
  };
  const compile = (asset) => WebAssembly.compileStreaming(fetchChecked(asset)).then(arrived(asset));
  const bytes = (asset) => fetchChecked(asset).then((r) => r.arrayBuffer()).then((b) => new Uint8Array(b)).then(arrived(asset));
  const blobUrl = (asset, type) => bytes(asset).then((b) => URL.createObjectURL(new Blob([b], { type })));

  let t = performance.now();
  const interpreter = compile(core.wasm);
  const libraries = python.libraries.map((asset) => ({ path: asset.path, module: compile(asset) }));
  const names = [python.main, ...python.modules];  // served with the page, as worker.js is
  const sources = Promise.all(names.map(async (name) => {
    const response = await fetch(name);
    if (!response.ok) throw new Error(`${name}: HTTP ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  }));
  const restorable = sources.then((all) => cachedSnapshot(python.snapshot, Object.fromEntries(names.map((n, i) => [n, all[i]]))));
  // Pyodide's scripts are imported from the checked bytes, the interpreter reads the rest from them.
  const [loaderURL, scriptURL, stdLibURL, lockFileURL, sitePackages, source, cached] = await Promise.all([
    blobUrl(core.loader, "text/javascript"), blobUrl(core.script, "text/javascript"), blobUrl(python.stdlib),
    blobUrl(python.lock), bytes(python.site_packages), sources, restorable]);
  mark("download", t);
  const text = (name) => new TextDecoder().decode(source[names.indexOf(name)]);
  let snapshot = cached;
  t = performance.now();
  progress("python", snapshot ? "Restoring Python" : "Starting Python");
  const options = { indexURL: core.index_url, loaderURL, scriptURL, interpreter, libraries, stdLibURL, lockFileURL };
  try {
    ({ pyodide } = await startPython({ ...options, snapshot }));
  } catch (error) {
    if (!snapshot) throw error;
    console.warn(`starting without the Python snapshot: ${error.message}`);
    snapshot = null;
    ({ pyodide } = await startPython(options));
  }
  [loaderURL, scriptURL, stdLibURL, lockFileURL].forEach((url) => URL.revokeObjectURL(url));
  if (!snapshot && self.caches) snapshotToCache = python.snapshot;
  mark("python", t);

  t = performance.now();
  progress("packages", "Loading numpy and strata");
  const modules = Object.fromEntries(python.modules.map((name) => [name, text(name)]));
  // Restored, worker.py has run already; Python's random numbers must not repeat the snapshot's.
  installPython(pyodide, { sitePackages, modules, main: snapshot ? undefined : text(python.main) });
  if (snapshot) pyodide.runPython("import sys; 'random' in sys.modules and sys.modules['random'].seed()");
  mark("packages", t);

  t = performance.now();
  progress("model", "Loading the model");
  const model = await call("load_model", [wsUrl]);
  mark("model", t);

  const info = await call("runtime_info", []);
  post("ready", { info, model, timings: { ready_ms: performance.now() - t0, steps, snapshot: Boolean(snapshot) } });
}

// worker.py's functions, looked up once.
const functions = new Map();
function pyFunction(method) {
  if (!functions.has(method)) {
    const fn = pyodide.globals.get(method);
    if (!fn) throw new Error(`worker.py has no function ${method}`);
    functions.set(method, fn);
  }
  return functions.get(method);
}

// Call a function of worker.py with plain JS arguments; get plain JS back. An async
// function returns an awaitable proxy of its Future, which settles to the value.
async function call(method, args) {
  const pyArgs = args.map((arg) => (arg !== null && typeof arg === "object" ? pyodide.toPy(arg) : arg));
  try {
    return plain(await pyFunction(method)(...pyArgs));
  } finally {
    pyArgs.forEach((arg) => arg && typeof arg.destroy === "function" && arg.destroy());
  }
}

function plain(result) {
  if (!result || typeof result.toJs !== "function") return result;
  const value = result.toJs({ dict_converter: Object.fromEntries });
  result.destroy();
  return value;
}

// A request (classify_sample, classify_picture) comes back from Python step by step,
// each a synchronous call: an answer; or the promise of the device's one call into
// onnxruntime-web, awaited here and handed to resume(); or, when the request waits on the
// network or on loading, finish(), which continues in Python's event loop. So a request
// the device answers crosses into Python at most twice and never waits on its event loop.
const STEPPED = new Set(["classify_sample", "classify_picture"]);

async function classify(method, args) {
  let step = await call(method, args);
  while (step.run) step = pyFunction("resume")(step.id, await step.run);  // a branch between two stretches
  return step.answer || call("finish", [step.id]);
}

// The grid's yardstick for Strata's own cost per request (bench/grid/cells.py): the same
// onnxruntime-web graph the current plan runs, called bare, as a page using onnxruntime-web
// alone would call it, on the same prepared inputs. No Python at all.
let bare = null;
async function bareOrt(index) {
  bare = bare || await call("bare_graph", []);
  const { ort, session, shape } = bare;
  const size = shape.reduce((a, b) => a * b, 1);
  const offset = (index % (bare.inputs.length / size)) * size;
  const x = new ort.Tensor("float32", bare.inputs.subarray(offset, offset + size), shape);
  const outputs = await session.run({ [bare.input]: x });
  const logits = outputs[bare.output].data;
  let label = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[label]) label = i;
  outputs[bare.output].dispose();
  return { label };
}

self.onmessage = ({ data }) => {
  if (data.type === "start") {
    start(data.wsUrl).catch((error) => post("error", { message: String((error && error.message) || error) }));
  } else if (data.type === "call") {
    const run = data.method === "bare_ort" ? () => bareOrt(...data.args)
      : () => (STEPPED.has(data.method) ? classify : call)(data.method, data.args);
    run().then(
      (result) => { post("reply", { id: data.id, result }); if (STEPPED.has(data.method)) cacheSnapshotOnce(); },
      (error) => post("reply", { id: data.id, error: String((error && error.message) || error) }),
    );
  }
};
