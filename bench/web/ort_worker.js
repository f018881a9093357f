// onnxruntime-web in a Web Worker: load the runtime and the full model, then classify
// input tensors on request. Times are taken here, around tensor in to label out, as
// Strata's worker times its own requests.
let ort = null;
let session = null;
let inputs = null;
let shape = null;

async function load({ ort: base, model, inputs: tensors, shape: inputShape }) {
  const begin = performance.now();
  ort = await import(`${base}ort.wasm.min.mjs`);
  ort.env.wasm.wasmPaths = base;  // the wasm next to the module, on the edge, never a CDN
  const bytes = new Uint8Array(await (await fetch(model)).arrayBuffer());
  session = await ort.InferenceSession.create(bytes);
  inputs = new Float32Array(tensors);
  shape = inputShape;
  return { load_ms: performance.now() - begin, model_bytes: bytes.length, threads: ort.env.wasm.numThreads };
}

async function run({ index }) {
  const size = shape.reduce((a, b) => a * b, 1);
  const count = inputs.length / size;
  const begin = performance.now();
  const x = new ort.Tensor("float32", inputs.subarray((index % count) * size, (index % count + 1) * size), shape);
  const outputs = await session.run({ [session.inputNames[0]]: x });
  const logits = outputs[session.outputNames[0]].data;
  let label = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[label]) label = i;
  const ms = performance.now() - begin;
  x.dispose();
  outputs[session.outputNames[0]].dispose();
  return { ms, label };
}

const METHODS = { load, run };
self.onmessage = async ({ data: { id, method, args } }) => {
  try {
    self.postMessage({ id, result: await METHODS[method](args) });
  } catch (error) {
    self.postMessage({ id, error: String((error && error.message) || error) });
  }
};
