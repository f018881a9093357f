// The page: starts the worker and shows what it reports. All compute happens in the
// worker, so this thread only renders and never blocks. Charts are in charts.js, a
// person's own images (upload, camera) in input.js.

import { latencyHistogram, sparkline, timingBar } from "./charts.js";
import { drawPixels, setUpInput } from "./input.js";

const $ = (id) => document.getElementById(id);
const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;
const seconds = (ms) => `${(ms / 1000).toFixed(2)} s`;

const worker = new Worker("worker.js", { type: "module" });
const calls = new Map();
let nextCall = 0;
let model = null;
let samples = null;  // { pixels, labels, size }: every shipped test image, for the gallery and the preview

// Call a function of browser/worker.py in the worker; resolves with its result.
function callWorker(method, ...args) {
  const id = ++nextCall;
  return new Promise((resolve, reject) => {
    calls.set(id, { resolve, reject });
    worker.postMessage({ type: "call", id, method, args });
  });
}

function showProgress({ step, loaded, total, transferredTotal }) {
  $("load-step").textContent = step;
  $("load-progress").value = total ? (100 * loaded) / total : 0;
  $("load-bytes").textContent = `${mb(loaded)} of ${mb(total)} (${mb(transferredTotal)} over the wire, gzip)`;
}

function definitionList(element, rows) {
  element.replaceChildren(...Object.entries(rows).flatMap(([k, v]) => {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    return [dt, dd];
  }));
}

// -- start-up: cold or warm, time to ready and to the first answer, remembered -----------
const START_KEY = "strata.startup";

// Cold if the runtime's files crossed the network, warm if the HTTP cache served them:
// the worker's Resource Timing says how many bytes each download transferred.
function cacheState({ transfer_bytes: sent, encoded_bytes: encoded }) {
  if (!encoded) return "unknown";
  return sent > 0.5 * encoded ? "cold" : sent < 0.1 * encoded ? "warm" : "partly cached";
}

function remembered() {
  try { return JSON.parse(localStorage.getItem(START_KEY)) || {}; } catch { return {}; }
}

function showStartUp(load) {
  const { kind, readyMs, firstAnswerMs, transfer } = load;
  const line = $("start-times");
  Object.assign(line.dataset, { kind, readyMs: readyMs.toFixed(0), firstAnswerMs: firstAnswerMs.toFixed(0) });
  line.textContent = `This load was ${kind}: ${mb(transfer.transfer_bytes)} of ${mb(transfer.encoded_bytes)} `
    + `came over the network. Ready in ${seconds(readyMs)}, first answer at ${seconds(firstAnswerMs)}.`;
  const known = remembered();
  if (kind === "cold" || kind === "warm") {
    known[kind] = { ready_ms: readyMs, first_answer_ms: firstAnswerMs, at: new Date().toISOString() };
    try { localStorage.setItem(START_KEY, JSON.stringify(known)); } catch { /* storage disabled: show this load only */ }
  }
  const figure = (key) => ["cold", "warm"].map((k) => `${k} ${known[k] ? seconds(known[k][key]) : "not seen yet"}`).join(" · ");
  const history = $("start-history");
  history.dataset.both = String(Boolean(known.cold && known.warm));
  history.textContent = `Time to ready on this browser: ${figure("ready_ms")}; to the first answer: ${figure("first_answer_ms")}.`
    + (known.cold && known.warm ? "" : " Reload the page to see the other one.");
}

// -- the plan and the context ------------------------------------------------------------
const TIER_OF = (plan, k) => (k < plan.a ? "device" : k < plan.b ? "edge" : "cloud");
let lastPlan = null;

function manualPlan() {
  return {
    a: Number($("plan-a").value), b: Number($("plan-b").value),
    codec: $("plan-codec").value, branch: $("plan-branch").checked,
  };
}

function setUpPlanForm(plan, blocks) {
  const options = (select, from, to) => select.replaceChildren(...Array.from({ length: to - from + 1 }, (_, i) => {
    const option = document.createElement("option");
    option.value = option.textContent = String(from + i);
    return option;
  }));
  options($("plan-a"), 0, blocks);
  options($("plan-b"), 0, blocks);
  $("plan-a").value = plan.a; $("plan-b").value = plan.b;
  $("plan-codec").value = plan.codec; $("plan-branch").checked = plan.branch;
  const apply = () => {
    if (Number($("plan-a").value) === 0) $("plan-branch").checked = false;
    if (Number($("plan-b").value) < Number($("plan-a").value)) $("plan-b").value = $("plan-a").value;
    callWorker("set_plan", $("plan-fixed").checked ? manualPlan() : null).catch(showError);
  };
  $("plan-form").addEventListener("change", apply);
  const goal = () => callWorker("set_goal", $("goal").value,
    $("goal").value === "accuracy" ? Number($("budget").value) : null, $("privacy").checked).catch(showError);
  $("goal-form").addEventListener("change", goal);
}

function showPlan(update) {
  const { plan } = update;
  const strip = $("plan-strip");
  strip.replaceChildren(...model.block_names.map((name, k) => {
    const cell = document.createElement("span");
    cell.className = `block ${TIER_OF(plan, k)}`;
    cell.textContent = name;
    const onDevice = k < plan.a && update.executors;  // which executor runs it here: numpy or onnxruntime-web
    cell.title = `${name}: ${TIER_OF(plan, k)}${onDevice ? ` (${update.executors[k] === "ort" ? "onnxruntime-web" : "numpy"})` : ""}`;
    return cell;
  }));
  const variant = plan.variant ? `pruned variant ${plan.variant}` : "the unpruned model";
  const text = `${variant}, ${plan.branch ? "branch on, " : "branch off, "}device [0, ${plan.a}), `
    + `edge [${plan.a}, ${plan.b}), cloud [${plan.b}, ${model.blocks}), codec ${plan.codec}`;
  strip.setAttribute("aria-label", text);
  Object.assign(strip.dataset, { a: plan.a, b: plan.b, codec: plan.codec, branch: plan.branch, auto: update.auto,
    variant: plan.variant });
  $("plan-summary").textContent = `${update.auto ? "Planner" : "Fixed by hand"}: ${text}. `
    + `Predicted ${update.predicted_ms.toFixed(1)} ms per image, ${update.energy_mj.toFixed(1)} mJ on the device`
    + (update.reason ? `. ${update.reason}` : "");
  if (update.changed) strip.dataset.changes = String(Number(strip.dataset.changes || 0) + 1);
  lastPlan = update;
}

const SERIES = {
  rtt_ms: ["RTT", (v) => `${v.toFixed(1)} ms`],
  up_bps: ["uplink", (v) => `${(v / 1e6).toFixed(1)} Mbit/s`],
  down_bps: ["downlink", (v) => `${(v / 1e6).toFixed(1)} Mbit/s`],
  device_slowdown: ["device slowdown", (v) => `${v.toFixed(2)}x`],
  edge_queue_ms: ["edge queue", (v) => `${v.toFixed(1)} ms`],
};
const history = Object.fromEntries(Object.keys(SERIES).map((key) => [key, []]));

function showContext(figures) {
  $("context-plots").replaceChildren(...Object.entries(SERIES).map(([key, [label, format]]) => {
    const values = history[key];
    if (figures[key] !== null && figures[key] !== undefined) values.push(figures[key]);
    if (values.length > 60) values.shift();
    return sparkline(key, values, `${label}: ${values.length ? format(values[values.length - 1]) : "…"}`);
  }));
}

// -- input: the gallery, and what the model sees ----------------------------------------
const rawSize = () => model.input_size;  // [rows, cols]: the manifest's input.raw_size
const sizeText = () => `${rawSize()[1]}×${rawSize()[0]}`;

function showPixels(pixels, caption) {
  drawPixels($("preview"), pixels, rawSize());
  $("preview").setAttribute("aria-label", `What the model sees: ${caption}, ${sizeText()} pixels`);
  $("preview-caption").textContent = `What the model sees: ${caption}, ${sizeText()}.`;
}

const samplePixels = (index) => samples.pixels.subarray(index * samples.size ** 2, (index + 1) * samples.size ** 2);

async function showGallery(count) {
  samples = await callWorker("gallery", model.samples);
  const buttons = samples.labels.slice(0, count).map((label, index) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "sample";
    button.tabIndex = index === 0 ? 0 : -1;  // one tab stop; arrow keys move within the gallery
    button.setAttribute("aria-label", `test image ${index}: ${model.classes[label]}`);
    const canvas = document.createElement("canvas");
    drawPixels(canvas, samplePixels(index), [samples.size, samples.size]);
    button.append(canvas);
    button.addEventListener("click", () => { rove(button); classify(index).catch(showInputError); });
    const item = document.createElement("li");
    item.append(button);
    return item;
  });
  $("gallery").replaceChildren(...buttons);
}

// The gallery is one tab stop: the last item used has tabindex 0, arrow keys move.
function rove(target) {
  $("gallery").querySelectorAll(".sample").forEach((item) => { item.tabIndex = item === target ? 0 : -1; });
}

function galleryKeys(event) {
  const items = [...$("gallery").querySelectorAll(".sample")];
  const from = items.indexOf(document.activeElement);
  if (from < 0) return;
  const columns = items.filter((item) => item.offsetTop === items[0].offsetTop).length;
  const to = { ArrowRight: from + 1, ArrowLeft: from - 1, ArrowDown: from + columns, ArrowUp: from - columns,
    Home: 0, End: items.length - 1 }[event.key];
  if (to === undefined) return;
  event.preventDefault();
  const target = items[Math.max(0, Math.min(items.length - 1, to))];
  rove(target);
  target.focus();
}

// -- answers -----------------------------------------------------------------------------
const SOURCES = { upload: "your upload", camera: "a camera frame" };

function showAnswer(answer, source) {
  const box = $("result");
  // Two answers a second from the camera would drown a screen reader: announce only the others.
  box.setAttribute("aria-live", source === "camera" && $("camera-continuous").checked ? "off" : "polite");
  Object.assign(box.dataset, { label: answer.label, tier: answer.tier, fallback: answer.fallback || "", source,
    index: answer.index ?? "", count: String(Number(box.dataset.count || 0) + 1) });
  const heading = document.createElement("p");
  heading.className = "answer";
  heading.textContent = `${model.classes[answer.label]} (${(100 * answer.confidence).toFixed(1)} %), `
    + `answered by the ${answer.tier}` + (answer.fallback ? ` as a fallback: ${answer.fallback}` : "");
  const detail = document.createElement("p");
  detail.className = "muted";
  detail.textContent = (source === "gallery" ? `Test image ${answer.index}, true class: ${model.classes[answer.truth]}. `
    : `From ${SOURCES[source]}. `) + `Measured ${answer.timing.total_ms.toFixed(1)} ms`
    + (lastPlan ? `, predicted ${lastPlan.predicted_ms.toFixed(1)} ms (on average over exits).` : ".");
  box.replaceChildren(heading, detail, ...timingBar(answer.timing));
  return answer;
}

async function classify(index) {
  showPixels(samplePixels(index), `test image ${index}`);
  return showAnswer(await callWorker("classify_sample", index), "gallery");
}

async function classifyPixels(pixels, source) {
  const [rows, cols] = rawSize();
  return showAnswer(await callWorker("classify_pixels", Array.from(pixels), cols, rows), source);
}

function showInputError(error) {
  $("input-message").textContent = `Could not classify: ${error.message || error}`;
}

// -- a run over N test images ------------------------------------------------------------
let lastRun = [];

function showHistogram() {
  const box = $("latency-histogram");
  box.replaceChildren(latencyHistogram(lastRun, Math.max(260, box.clientWidth || 480)));
}

async function runBatch() {
  const count = Math.min(Number($("run-count").value) || 1, model.samples);
  $("run").disabled = true;
  lastRun = [];
  let right = 0, exits = 0, fallbacks = 0;
  const body = $("run-table").tBodies[0];
  body.replaceChildren();
  for (let index = 0; index < count; index++) {
    const answer = await classify(index);
    right += answer.label === answer.truth;
    exits += answer.tier === "browser" && !answer.fallback;
    fallbacks += Boolean(answer.fallback);
    const row = body.insertRow();
    Object.assign(row.dataset, { index, label: answer.label, tier: answer.tier, fallback: answer.fallback || "" });
    for (const text of [index, model.classes[answer.truth], model.classes[answer.label],
      answer.fallback ? `${answer.tier} (fallback)` : answer.tier, answer.timing.total_ms.toFixed(1)]) {
      row.insertCell().textContent = text;
    }
    lastRun.push(answer);
    showHistogram();
    $("run-summary").textContent = `${index + 1}/${count}: accuracy ${(100 * right / (index + 1)).toFixed(1)} %, `
      + `exit rate ${(100 * exits / (index + 1)).toFixed(1)} %, fallbacks ${fallbacks}`;
  }
  $("run-summary").dataset.done = String(count);
  $("run").disabled = false;
  return lastRun;
}

let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => lastRun.length && showHistogram(), 150);
});

// -- ready -------------------------------------------------------------------------------
function showReady({ info, model: loaded, timings }) {
  const readyMs = performance.now();  // since navigation start, like the start-up benchmark
  model = loaded;
  $("load-step").textContent = "Runtime loaded";
  $("load-progress").value = 100;
  const status = $("status");
  status.dataset.state = "ready";
  status.textContent = `Ready in ${seconds(readyMs)}`;
  definitionList($("runtime-info"), {
    "Python": `${info.python} on ${info.platform}`,
    "numpy": info.numpy,
    "strata": info.strata,
    "Cross-origin isolated": String(info.isolated),
    "Model": `${model.blocks} blocks; browser bundle ${(model.bundle_bytes / 1024).toFixed(0)} KiB`,
    "Load steps": Object.entries(timings.steps).map(([k, v]) => `${k} ${seconds(v)}`).join(", "),
    "Python start": timings.snapshot ? "restored from its memory snapshot" : "started",
  });
  setUpPlanForm(model.plan, model.blocks);
  const transfer = callWorker("load_transfer");
  (async () => {
    model.input_size = await callWorker("input_size");
    if (model.input_size) {  // null for a model made by `strata split`: its samples are tensors, not pictures
      document.querySelectorAll(".raw-size").forEach((el) => { el.textContent = sizeText(); });
      await showGallery(Math.min(40, model.samples));
      $("gallery").addEventListener("keydown", galleryKeys);
      setUpInput({ size: rawSize(), classify: classifyPixels, showPixels, onError: showInputError });
    }
    $("run").disabled = false;
    $("run").addEventListener("click", () => runBatch().catch(showInputError));
    await classify(0);  // the first answer, without waiting for a click: its time is part of start-up
    const firstAnswerMs = performance.now();
    document.body.dataset.firstAnswerMs = firstAnswerMs.toFixed(1);
    const bytes = await transfer;
    showStartUp({ kind: cacheState(bytes), readyMs, firstAnswerMs, transfer: bytes });
  })().catch(showError);
  setUpDemo().catch(() => {});
  document.body.dataset.readyMs = readyMs.toFixed(1);
  document.body.dataset.snapshot = String(timings.snapshot);
  document.body.dataset.ready = "true";
  callWorker("measure_rtt", 20).then((rtt) => {
    $("rtt").textContent = `${rtt.median_ms.toFixed(2)} ms median of ${rtt.samples} pings`;
    $("rtt").dataset.ms = rtt.median_ms;
  }, (error) => { $("rtt").textContent = `unavailable (${error.message})`; });
}

// Demo mode (strata serve --emulate): let a person switch the emulated link.
async function setUpDemo() {
  const link = await (await fetch("/demo/link")).json();
  if (!link.enabled) return;
  $("demo").hidden = false;
  $("demo-link").value = link.name;
  $("demo-link").addEventListener("change", async () => {
    const reply = await (await fetch(`/demo/link/${$("demo-link").value}`, { method: "PUT" })).json();
    $("demo-note").textContent = reply.back_to ? `back to ${reply.back_to} in ${reply.after_s} s` : "";
    if (reply.back_to) setTimeout(() => { $("demo-link").value = reply.back_to; $("demo-note").textContent = ""; },
      reply.after_s * 1000);
  });
}

function showError(message) {
  const status = $("status");
  status.dataset.state = "error";
  status.textContent = `Error: ${(message && message.message) || message}`;
}

worker.onmessage = ({ data }) => {
  if (data.type === "progress") showProgress(data);
  else if (data.type === "ready") showReady(data);
  else if (data.type === "plan") { showPlan(data); showContext(data.context); }
  else if (data.type === "edge") {
    $("edge-state").dataset.state = data.state;
    $("edge-state").textContent = data.detail ? `${data.state} (${data.detail})` : data.state;
  } else if (data.type === "executor") {
    $("executor-state").dataset.state = data.state;
    $("executor-state").textContent = `onnxruntime-web ${data.state}${data.detail ? ` (${data.detail})` : ""}`;
  } else if (data.type === "reply") {
    const pending = calls.get(data.id);
    calls.delete(data.id);
    if ("error" in data) pending.reject(new Error(data.error));
    else pending.resolve(data.result);
  } else if (data.type === "error") showError(data.message);
};
worker.onerror = (event) => showError(event.message || "the worker failed to start");
worker.postMessage({ type: "start", wsUrl: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws` });
window.strata = { classify, classifyPixels, runBatch, callWorker, plan: () => lastPlan };  // for tests and the console
