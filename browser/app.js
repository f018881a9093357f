// The page: starts the worker and shows what it reports. All compute happens in the
// worker, so this thread only renders and never blocks. The plan's strip and forms are
// in plan.js, charts in charts.js, a person's own pictures (upload, camera) in input.js,
// start-up in startup.js, the demo's link selector in demo.js.
// Every text about the model comes from its manifest (the worker's `about`).

import { latencyHistogram, loadCharts, TIER_COLOURS, TIER_WORDS, timeSeries, timingBar, WINDOW_S } from "./charts.js";
import { drawPicture, setUpInput } from "./input.js";
import { setUpDemo } from "./demo.js";
import { currentPlan, planCells, planWords, setUpPlan, showPlan } from "./plan.js";
import { cacheState, definitionList, finishSteps, seconds, showProgress, showStartUp } from "./startup.js";

const $ = (id) => document.getElementById(id);
const same = (p, q) => p && q && ["a", "b", "codec", "branch", "variant"].every((k) => p[k] === q[k]);

const worker = new Worker("worker.js", { type: "module" });
const calls = new Map();
let nextCall = 0;
let model = null;
let samples = null;  // the gallery: { labels, names, pixels?, rows?, cols? } (pixels RGBA, one picture each)
const charts = fetch("/assets.json").then((response) => response.json()).then(loadCharts);

// Call a function of browser/worker.py in the worker; resolves with its result.
function callWorker(method, ...args) {
  const id = ++nextCall;
  return new Promise((resolve, reject) => {
    calls.set(id, { resolve, reject });
    worker.postMessage({ type: "call", id, method, args });
  });
}

// A Python exception's message without its traceback and class ("strata.plan.PlanError:
// refused: …" becomes "refused: …"); the whole text stays in `detail`, for the console.
function workerError(text) {
  const last = text.trim().split("\n").pop();
  return Object.assign(new Error(last.replace(/^[\w.]+(Error|Exception): /, "")), { detail: text });
}

// -- the context: the edge's state and the probes' estimates over the last minute --------
const SERIES = {
  rtt_ms: { label: "RTT", unit: "ms", scale: 1, format: (v) => `${v.toFixed(1)} ms` },
  up_bps: { label: "uplink", unit: "Mbit/s", scale: 1e-6, format: (v) => `${v.toFixed(1)} Mbit/s` },
  down_bps: { label: "downlink", unit: "Mbit/s", scale: 1e-6, format: (v) => `${v.toFixed(1)} Mbit/s` },
  device_slowdown: { label: "device slowdown", unit: "× its profile", scale: 1, format: (v) => `${v.toFixed(2)}×` },
  edge_queue_ms: { label: "edge queue", unit: "ms", scale: 1, format: (v) => `${v.toFixed(1)} ms` },
};
const history = Object.fromEntries(Object.keys(SERIES).map((key) => [key, []]));  // [time in s, value]

function plotFigure(key) {
  let figure = $("context-plots").querySelector(`[data-series="${key}"]`);
  if (!figure) {
    figure = document.createElement("figure");
    figure.dataset.series = key;
    const plot = document.createElement("div");
    plot.className = "plot";
    plot.setAttribute("aria-hidden", "true");  // the caption says the latest value
    figure.append(plot, document.createElement("figcaption"));
    $("context-plots").append(figure);
  }
  return figure;
}

function showContext(figures) {
  const now = performance.now() / 1000;
  for (const [key, spec] of Object.entries(SERIES)) {
    const points = history[key];
    if (figures[key] != null) points.push([now, figures[key] * spec.scale]);
    while (points.length && points[0][0] < now - WINDOW_S) points.shift();
    timeSeries(plotFigure(key), { ...spec, colour: TIER_COLOURS.device }, points, now);
  }
  if (figures.rtt_ms != null) {  // the headline follows the live estimate, and says when pings go unanswered
    $("rtt").textContent = edgeUp ? `${figures.rtt_ms.toFixed(1)} ms median of the last pings (live)`
      : `no pings answered now (the last estimate was ${figures.rtt_ms.toFixed(1)} ms)`;
    $("rtt").dataset.ms = figures.rtt_ms;
  }
}

let edgeUp = false;

function showEdge({ state, detail }) {
  $("edge-state").dataset.state = state;
  $("edge-state").textContent = detail ? `${state} (${detail})` : state;
  if (state !== "error") edgeUp = state === "connected";  // an error report leaves the connection as it was
  const down = state === "reconnecting" || state === "unreachable";
  const notice = $("edge-notice");
  notice.hidden = !down;
  notice.textContent = down ? `The edge is down (${state}${detail ? `: ${detail}` : ""}). Answers come from this `
    + "device alone until it is back, marked as fallbacks." : "";
}

// -- input: the gallery, and what the model sees -----------------------------------------
const sizeText = () => `${model.about.size[1]}×${model.about.size[0]}`;
const className = (label) => (label >= 0 ? model.classes[label] : null);

// Draw one gallery picture (RGBA) on a canvas; false if the model takes no pictures, or
// for a sample past the gallery (a batch may run over more samples than it shows).
function drawSample(canvas, index) {
  if (!samples.pixels || index >= samples.labels.length) return false;
  const size = samples.rows * samples.cols * 4;
  drawPicture(canvas, samples.pixels.subarray(index * size, (index + 1) * size), [samples.rows, samples.cols]);
  return true;
}

const sampleName = (index) => samples.names[index] ?? `sample ${index}`;

function showSeen(draw, caption) {
  const preview = $("preview");
  preview.closest("figure").hidden = !draw(preview);
  preview.setAttribute("aria-label", `What the model sees: ${caption}, ${sizeText()} pixels`);
  $("preview-caption").textContent = `What the model sees: ${caption}, ${sizeText()}.`;
}

async function showGallery(count) {
  samples = await callWorker("gallery", count);
  const buttons = samples.labels.map((label, index) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "sample";
    button.tabIndex = index === 0 ? 0 : -1;  // one tab stop; arrow keys move within the gallery
    const name = className(label);
    button.setAttribute("aria-label", `${samples.names[index]}${name ? `: ${name}` : ""}`);
    button.title = button.getAttribute("aria-label");
    const canvas = document.createElement("canvas");
    if (!drawSample(canvas, index)) canvas.hidden = true;
    const text = document.createElement("span");
    text.className = "tile-label";
    text.textContent = name || samples.names[index];
    button.append(canvas, text);
    button.addEventListener("click", () => {
      rove(button);
      classify(index).then(bringAnswerIntoView, showInputError);
    });
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

// A tapped sample on a phone: its answer may be far below; scroll it into view.
function bringAnswerIntoView() {
  const box = $("result").closest(".outcome").getBoundingClientRect();
  if (box.top < 0 || box.bottom > innerHeight) $("result").closest(".outcome").scrollIntoView({ block: "nearest" });
}

// -- answers -----------------------------------------------------------------------------
// Python's None arrives as undefined (Pyodide's toJs): test for absence with `== null`.
const SOURCES = { upload: "your upload", camera: "a camera frame" };

// What the model answered: a class and its confidence, or a tensor's summary.
function answerWords(answer) {
  if (answer.summary) {
    const { shape, min, max, top } = answer.summary;
    const largest = top.slice(0, 3).map((t) => `${t.value.toPrecision(3)} at [${t.at.join(", ")}]`).join(", ");
    return `A ${shape.join("×")} tensor from ${min.toPrecision(3)} to ${max.toPrecision(3)}; largest ${largest}`;
  }
  return `${className(answer.label)} (${(100 * answer.confidence).toFixed(1)} %)`;
}

function uncertainty(answer) {
  if (answer.uncertain === "branch-disagrees") {
    return `Uncertain: the binary branch saw ${className(answer.branch_label)}, the main path ${className(answer.label)}. `
      + "The picture may be unlike anything the model was trained on.";
  }
  if (answer.uncertain === "low-confidence") {
    return "Uncertain: the model gives this answer less than even odds. The picture may be unlike anything "
      + "the model was trained on.";
  }
  return null;
}

function showAnswer(answer, source) {
  const box = $("result");
  // Two answers a second from the camera would drown a screen reader: announce only the others.
  box.setAttribute("aria-live", source === "camera" && $("camera-continuous").checked ? "off" : "polite");
  Object.assign(box.dataset, { label: answer.label, tier: answer.tier, fallback: answer.fallback || "", source,
    index: answer.index ?? "", count: String(Number(box.dataset.count || 0) + 1), plan: JSON.stringify(answer.plan),
    uncertain: answer.uncertain || "" });
  const heading = document.createElement("p");
  heading.className = "answer";
  heading.textContent = `${answerWords(answer)}, answered by ${TIER_WORDS[answer.tier] || answer.tier}`
    + (answer.fallback ? ` as a fallback: ${answer.fallback}` : "");
  const parts = [heading];
  const doubt = uncertainty(answer);
  if (doubt) {
    const warning = document.createElement("p");
    warning.className = "uncertain";
    warning.textContent = doubt;
    parts.push(warning);
  }
  const truth = answer.truth >= 0 ? `, ${model.about.truth}: ${className(answer.truth)}` : "";
  const detail = document.createElement("p");
  detail.className = "muted";
  detail.textContent = (source === "gallery" ? `${sampleName(answer.index)}${truth}. ` : `From ${SOURCES[source]}. `)
    + `Measured ${answer.timing.total_ms.toFixed(1)} ms`
    + (answer.predicted_ms != null ? `, predicted ${answer.predicted_ms.toFixed(1)} ms.` : ".");
  const plan = document.createElement("p");
  plan.className = "muted answer-plan";
  box.replaceChildren(...parts, detail, plan, ...timingBar(answer.timing));
  showAnswerPlan();
  return answer;
}

// The plan that produced the answer shown, and whether the plan in force has changed since.
function showAnswerPlan() {
  const line = $("result").querySelector(".answer-plan");
  if (!line) return;
  const answered = JSON.parse($("result").dataset.plan);
  const changed = !same(answered, currentPlan());
  line.dataset.changed = String(changed);
  line.textContent = `The plan that answered: ${planWords(answered, model.blocks)}`
    + (changed ? `. The plan in force has changed since: ${planWords(currentPlan(), model.blocks)}.` : ".");
}

async function classify(index) {
  showSeen((canvas) => drawSample(canvas, index), sampleName(index));
  return showAnswer(await callWorker("classify_sample", index), "gallery");
}

async function classifyPicture(picture, source, { invert = null, contrast = true } = {}) {
  const answer = await callWorker("classify_picture", picture.pixels, picture.width, picture.height, invert, contrast);
  const { seen } = answer;
  showSeen((canvas) => seen && (drawPicture(canvas, seen.pixels, [seen.rows, seen.cols]), true),
    source === "camera" ? "the camera's centre square" : "your upload");
  return showAnswer(answer, source);
}

function showInputError(error) {
  $("input-message").textContent = `Could not classify: ${error.message || error}`;
}

// -- a run over N samples ----------------------------------------------------------------
let lastRun = [];

function showHistogram() {
  const box = $("latency-histogram");
  box.replaceChildren(latencyHistogram(lastRun, Math.max(260, box.clientWidth || 480)));
}

const percent = (n, of) => `${((100 * n) / of).toFixed(1)} %`;

async function runBatch() {
  const count = Math.min(Number($("run-count").value) || 1, model.samples);
  $("run").disabled = true;
  lastRun = [];
  let right = 0, exits = 0, onDevice = 0, fallbacks = 0, previous = null;
  const body = $("run-table").tBodies[0];
  body.replaceChildren();
  try {  // a failed request ends the run with its error shown (showInputError), the button usable again
    for (let index = 0; index < count; index++) {
      const answer = await classify(index);
      right += answer.label === answer.truth;
      exits += answer.exited;  // the branch was confident: blocks after conv1 never ran
      onDevice += answer.tier === "browser" && !answer.fallback;  // computed here, by the plan
      fallbacks += Boolean(answer.fallback);
      const row = body.insertRow();
      Object.assign(row.dataset, { index, label: answer.label, tier: answer.tier, fallback: answer.fallback || "" });
      const from = TIER_WORDS[answer.tier].replace(/^the /, "");
      for (const text of [index, className(answer.truth) ?? "–", className(answer.label) ?? "tensor",
        answer.fallback ? `${from} (fallback)` : from, answer.timing.total_ms.toFixed(1),
        same(answer.plan, previous) ? "" : planCells(answer.plan, model.blocks)]) {
        row.insertCell().textContent = text;
      }
      row.cells[5].title = planWords(answer.plan, model.blocks);
      previous = answer.plan;
      lastRun.push(answer);
      showHistogram();
      const done = index + 1;
      const summary = $("run-summary");
      Object.assign(summary.dataset, { exits, onDevice, fallbacks });
      summary.textContent = `${done}/${count}: `
        + (answer.truth >= 0 ? `${model.about.agreement} ${percent(right, done)}, ` : "")
        + `branch exits ${percent(exits, done)}, computed on this device ${percent(onDevice, done)}, fallbacks ${fallbacks}`;
    }
    $("run-summary").dataset.done = String(count);
  } finally {
    $("run").disabled = false;
  }
  return lastRun;
}

let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => lastRun.length && showHistogram(), 150);
});

// -- ready -------------------------------------------------------------------------------
function showModel(about) {
  $("samples-text").textContent = about.samples;
  $("input-text").textContent = about.input == null
    ? `This model takes ${about.size.join("×")} tensors, not pictures: classify its samples.`
    : `Turned into the model's input in the worker, by the model's own rule: ${about.input}. It answers ${about.answers}.`;
  $("truth-heading").textContent = about.truth;
  $("conversion").hidden = !about.conversion;
}

function showReady({ info, model: loaded, timings }) {
  const readyMs = performance.now();  // since navigation start, like the start-up benchmark
  model = loaded;
  finishSteps(timings.steps);
  const status = $("status");
  status.dataset.state = "ready";
  status.textContent = `Ready in ${seconds(readyMs)}`;
  definitionList($("runtime-info"), {
    "Python": `${info.python} on ${info.platform}`,
    "numpy": info.numpy,
    "strata": info.strata,
    "Cross-origin isolated": String(info.isolated),
    "Model": `${model.about.name}: ${model.blocks} blocks`
      + (model.bundle_bytes ? `; browser bundle ${(model.bundle_bytes / 1024).toFixed(0)} KiB` : ""),
    "Load steps": Object.entries(timings.steps).map(([k, v]) => `${k} ${seconds(v)}`).join(", "),
    "Python start": timings.snapshot ? "restored from its memory snapshot" : "started",
  });
  showModel(model.about);
  setUpPlan({ loaded: model, initial: model.plan, callWorker, onError: showError });
  const transfer = callWorker("load_transfer");
  (async () => {
    await showGallery(Math.min(40, model.samples));
    $("gallery").addEventListener("keydown", galleryKeys);
    if (model.about.input != null) {
      setUpInput({ classify: classifyPicture, onError: showInputError, conversion: model.about.conversion });
    } else {
      $("upload").title = $("camera").title = $("input-text").textContent;
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
  charts.catch((error) => { $("context-plots").dataset.error = `charts unavailable (${error.message})`; });
  document.body.dataset.readyMs = readyMs.toFixed(1);
  document.body.dataset.snapshot = String(timings.snapshot);
  document.body.dataset.ready = "true";
}

function showError(message) {
  const status = $("status");
  status.dataset.state = "error";
  status.textContent = `Error: ${(message && message.message) || message}`;
}

worker.onmessage = ({ data }) => {
  if (data.type === "progress") showProgress(data);
  else if (data.type === "ready") showReady(data);
  else if (data.type === "plan") { showPlan(data); showAnswerPlan(); showContext(data.context); }
  else if (data.type === "edge") showEdge(data);
  else if (data.type === "executor") {
    $("executor-state").dataset.state = data.state;
    $("executor-state").textContent = `onnxruntime-web ${data.state}${data.detail ? ` (${data.detail})` : ""}`;
  } else if (data.type === "reply") {
    const pending = calls.get(data.id);
    calls.delete(data.id);
    if ("error" in data) pending.reject(workerError(data.error));
    else pending.resolve(data.result);
  } else if (data.type === "error") showError(data.message);
};
worker.onerror = (event) => showError(event.message || "the worker failed to start");
worker.postMessage({ type: "start", wsUrl: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws` });
window.strata = { classify, classifyPicture, runBatch, callWorker, plan: currentPlan };  // for tests and the console
