// The Web Worker: fetches Pyodide, numpy and the strata wheel with byte-level progress,
// starts Python, runs browser/worker.py, then serves the page's calls into it.
// Every URL is on the edge server.

const post = (type, data = {}) => self.postMessage({ type, ...data });
const PYTHON_MODULES = ["ort_web.py"];
let pyodide = null;

// For Python (ort_web.py), which cannot write a dynamic import() itself.
self.importModule = (url) => import(url);

// Fetch one file, reporting progress; the bytes land in the HTTP cache, so Pyodide's
// own fetch of the same URL right after is served from there.
async function fetchBytes(url, progress) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}; run \`make provision\` on the server`);
  const reader = response.body.getReader();
  const chunks = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    progress(value.length);
  }
  const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) { bytes.set(chunk, offset); offset += chunk.length; }
  return bytes;
}

async function start(wsUrl) {
  const t0 = performance.now();
  const steps = {};
  const mark = (name, since) => { steps[name] = performance.now() - since; };

  const assets = await (await fetch("/assets.json")).json();
  const all = [...assets.files, assets.strata_wheel];
  const total = all.reduce((n, a) => n + a.bytes, 0);
  const transferredTotal = all.reduce((n, a) => n + a.gzip_bytes, 0);
  let loaded = 0;
  let done = 0;
  let lastPost = 0;
  let t = performance.now();
  // All at once: from a warm cache each file costs a round trip, which in turn add up.
  const fetched = await Promise.all(all.map(async (asset) => {
    const bytes = await fetchBytes(asset.url, (n) => {
      loaded += n;
      const now = performance.now();
      if (now - lastPost > 30) {
        lastPost = now;
        post("progress", { phase: "download", step: `Downloading the runtime (${done} of ${all.length} files)`, loaded, total,
          transferredTotal });
      }
    });
    done += 1;
    return bytes;
  }));
  const wheel = fetched[all.indexOf(assets.strata_wheel)];
  post("progress", { phase: "python", step: "Starting Python", loaded, total, transferredTotal });
  mark("download", t);

  t = performance.now();
  const { loadPyodide } = await import(`${assets.pyodide.index_url}pyodide.mjs`);
  pyodide = await loadPyodide({ indexURL: assets.pyodide.index_url });
  mark("python", t);

  t = performance.now();
  post("progress", { phase: "packages", step: "Loading numpy and strata", loaded, total, transferredTotal });
  const failures = [];
  await pyodide.loadPackage(assets.pyodide.packages, { messageCallback: () => {}, errorCallback: (m) => failures.push(m) });
  if (failures.length) throw new Error(`loading ${assets.pyodide.packages} failed: ${failures.join("; ")}`);
  pyodide.unpackArchive(wheel, "wheel");
  // worker.py imports these from the working directory, which is on Python's path.
  for (const name of PYTHON_MODULES) pyodide.FS.writeFile(name, await (await fetch(name)).text());
  pyodide.runPython(await (await fetch("worker.py")).text());
  mark("packages", t);

  t = performance.now();
  post("progress", { phase: "model", step: "Loading the model", loaded, total, transferredTotal });
  const model = await call("load_model", [wsUrl]);
  mark("model", t);

  const info = await call("runtime_info", []);
  post("ready", { info, model, timings: { ready_ms: performance.now() - t0, steps } });
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
      (result) => post("reply", { id: data.id, result }),
      (error) => post("reply", { id: data.id, error: String((error && error.message) || error) }),
    );
  }
};
