// The page: starts the worker and shows what it reports. All compute happens in the
// worker, so this thread only renders and never blocks.

const $ = (id) => document.getElementById(id);
const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;
const TIER_COLOURS = { device: "#2f6fde", uplink: "#8fb3f0", edge: "#13795b", cloud: "#a05fd3", downlink: "#f0b35f" };

const worker = new Worker("worker.js", { type: "module" });
const calls = new Map();
let nextCall = 0;
let model = null;

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
    cell.title = `${name}: ${TIER_OF(plan, k)}`;
    return cell;
  }));
  const text = `${plan.branch ? "branch on, " : "branch off, "}device [0, ${plan.a}), edge [${plan.a}, ${plan.b}), `
    + `cloud [${plan.b}, ${model.blocks}), codec ${plan.codec}`;
  strip.setAttribute("aria-label", text);
  Object.assign(strip.dataset, { a: plan.a, b: plan.b, codec: plan.codec, branch: plan.branch, auto: update.auto });
  $("plan-summary").textContent = `${update.auto ? "Planner" : "Fixed by hand"}: ${text}. `
    + `Predicted ${update.predicted_ms.toFixed(1)} ms per image, ${update.energy_mj.toFixed(1)} mJ on the device`
    + (update.reason ? `. ${update.reason}` : "");
  if (update.changed) strip.dataset.changes = String(Number(strip.dataset.changes || 0) + 1);
  lastPlan = update;
}

// Small time-series plots of the context, in plain SVG.
const SERIES = {
  rtt_ms: ["RTT", (v) => `${v.toFixed(1)} ms`],
  up_bps: ["uplink", (v) => `${(v / 1e6).toFixed(1)} Mbit/s`],
  down_bps: ["downlink", (v) => `${(v / 1e6).toFixed(1)} Mbit/s`],
  device_slowdown: ["device slowdown", (v) => `${v.toFixed(2)}x`],
  edge_queue_ms: ["edge queue", (v) => `${v.toFixed(1)} ms`],
};
const history = Object.fromEntries(Object.keys(SERIES).map((key) => [key, []]));

function showContext(figures) {
  const plots = Object.entries(SERIES).map(([key, [label, format]]) => {
    const values = history[key];
    if (figures[key] !== null && figures[key] !== undefined) values.push(figures[key]);
    if (values.length > 60) values.shift();
    const figure = document.createElement("figure");
    figure.dataset.series = key;
    const max = Math.max(...values, 1e-9), min = Math.min(...values, 0);
    const points = values.map((v, i) => `${(i / 59) * 120},${30 - ((v - min) / (max - min || 1)) * 28}`).join(" ");
    figure.innerHTML = `<svg viewBox="0 0 120 32" width="120" height="32" aria-hidden="true">`
      + `<polyline fill="none" stroke="#2f6fde" stroke-width="1.5" points="${points}"/></svg>`;
    const caption = document.createElement("figcaption");
    caption.textContent = `${label}: ${values.length ? format(values[values.length - 1]) : "…"}`;
    figure.append(caption);
    return figure;
  });
  $("context-plots").replaceChildren(...plots);
}

async function showGallery(count) {
  const { pixels, labels, size } = await callWorker("gallery", count);
  const items = labels.map((label, index) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "sample";
    button.setAttribute("role", "listitem");
    button.setAttribute("aria-label", `test image ${index}, a ${model.classes[label]}`);
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = size;
    const image = canvas.getContext("2d").createImageData(size, size);
    for (let p = 0; p < size * size; p++) {
      const v = pixels[index * size * size + p];
      image.data.set([v, v, v, 255], p * 4);
    }
    canvas.getContext("2d").putImageData(image, 0, 0);
    button.append(canvas);
    button.addEventListener("click", () => classify(index));
    return button;
  });
  $("gallery").replaceChildren(...items);
}

function timingBar(timing) {
  const parts = [
    ["device", timing.device_compute_ms], ["uplink", timing.uplink_ms],
    ["edge", (timing.edge_total_ms || 0) - (timing.edge_to_cloud_ms || 0) - (timing.cloud_compute_ms || 0) - (timing.cloud_to_edge_ms || 0)],
    ["cloud", (timing.edge_to_cloud_ms || 0) + (timing.cloud_compute_ms || 0) + (timing.cloud_to_edge_ms || 0)],
    ["downlink", timing.downlink_ms],
  ].filter(([, ms]) => ms > 0);
  const total = parts.reduce((n, [, ms]) => n + ms, 0);
  const bar = document.createElement("div");
  bar.className = "timing-bar";
  bar.setAttribute("role", "img");
  bar.setAttribute("aria-label", parts.map(([name, ms]) => `${name} ${ms.toFixed(1)} ms`).join(", "));
  for (const [name, ms] of parts) {
    const segment = document.createElement("span");
    segment.style.width = `${(100 * ms) / total}%`;
    segment.style.background = TIER_COLOURS[name];
    segment.title = `${name}: ${ms.toFixed(2)} ms`;
    bar.append(segment);
  }
  const legend = document.createElement("p");
  legend.className = "muted";
  legend.textContent = parts.map(([name, ms]) => `${name} ${ms.toFixed(1)} ms`).join(" · ");
  return [bar, legend];
}

async function classify(index) {
  const answer = await callWorker("classify_sample", index);
  const box = $("result");
  box.dataset.label = answer.label;
  box.dataset.tier = answer.tier;
  box.dataset.fallback = answer.fallback || "";
  const heading = document.createElement("p");
  heading.className = "answer";
  heading.textContent = `${model.classes[answer.label]} (${(100 * answer.confidence).toFixed(1)} %), `
    + `answered by the ${answer.tier}` + (answer.fallback ? ` as a fallback: ${answer.fallback}` : "");
  const truth = document.createElement("p");
  truth.className = "muted";
  truth.textContent = `True class: ${model.classes[answer.truth]}. Measured ${answer.timing.total_ms.toFixed(1)} ms`
    + (lastPlan ? `, predicted ${lastPlan.predicted_ms.toFixed(1)} ms (on average over exits).` : ".");
  box.replaceChildren(heading, truth, ...timingBar(answer.timing));
  return answer;
}

async function runBatch() {
  const count = Math.min(Number($("run-count").value) || 1, model.samples);
  $("run").disabled = true;
  const rows = [];
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
    rows.push(answer);
    $("run-summary").textContent = `${index + 1}/${count}: accuracy ${(100 * right / (index + 1)).toFixed(1)} %, `
      + `exit rate ${(100 * exits / (index + 1)).toFixed(1)} %, fallbacks ${fallbacks}`;
  }
  $("run-summary").dataset.done = String(count);
  $("run").disabled = false;
  return rows;
}

function showReady({ info, model: loaded, timings }) {
  model = loaded;
  $("load-step").textContent = "Runtime loaded";
  $("load-progress").value = 100;
  const status = $("status");
  status.dataset.state = "ready";
  status.textContent = `Ready in ${(timings.ready_ms / 1000).toFixed(2)} s`;
  definitionList($("runtime-info"), {
    "Python": `${info.python} on ${info.platform}`,
    "numpy": info.numpy,
    "strata": info.strata,
    "Cross-origin isolated": String(info.isolated),
    "Model": `${model.blocks} blocks; browser bundle ${(model.bundle_bytes / 1024).toFixed(0)} KiB`,
    "Load steps": Object.entries(timings.steps).map(([k, v]) => `${k} ${(v / 1000).toFixed(2)} s`).join(", "),
  });
  setUpPlanForm(model.plan, model.blocks);
  showGallery(Math.min(40, model.samples));
  $("run").disabled = false;
  $("run").addEventListener("click", runBatch);
  setUpDemo().catch(() => {});
  document.body.dataset.readyMs = performance.now().toFixed(1);  // since navigation start
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
  status.textContent = `Error: ${message}`;
}

worker.onmessage = ({ data }) => {
  if (data.type === "progress") showProgress(data);
  else if (data.type === "ready") showReady(data);
  else if (data.type === "plan") { showPlan(data); showContext(data.context); }
  else if (data.type === "edge") {
    $("edge-state").dataset.state = data.state;
    $("edge-state").textContent = data.detail ? `${data.state} (${data.detail})` : data.state;
  } else if (data.type === "reply") {
    const pending = calls.get(data.id);
    calls.delete(data.id);
    if ("error" in data) pending.reject(new Error(data.error));
    else pending.resolve(data.result);
  } else if (data.type === "error") showError(data.message);
};
worker.onerror = (event) => showError(event.message || "the worker failed to start");
worker.postMessage({ type: "start", wsUrl: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws` });
window.strata = { classify, runBatch, callWorker, plan: () => lastPlan };  // for tests and the console
