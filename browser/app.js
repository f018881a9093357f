// The page: starts the worker and shows what it reports. All compute happens in the
// worker, so this thread only renders and never blocks.

const $ = (id) => document.getElementById(id);
const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;

function showProgress({ step, loaded, total, transferredTotal }) {
  $("load-step").textContent = step;
  $("load-progress").value = total ? (100 * loaded) / total : 0;
  $("load-bytes").textContent =
    `${mb(loaded)} of ${mb(total)} (${mb(transferredTotal)} over the wire, gzip)`;
}

function showReady({ info, timings }) {
  $("load-step").textContent = "Runtime loaded";
  $("load-progress").value = 100;
  const status = $("status");
  status.dataset.state = "ready";
  status.textContent = `Ready in ${(timings.ready_ms / 1000).toFixed(2)} s`;
  const rows = {
    "Python": `${info.python} on ${info.platform}`,
    "numpy": info.numpy,
    "strata": info.strata,
    "Cross-origin isolated": String(info.isolated),
    "Load steps": Object.entries(timings.steps).map(([k, v]) => `${k} ${(v / 1000).toFixed(2)} s`).join(", "),
  };
  $("runtime-info").replaceChildren(...Object.entries(rows).flatMap(([k, v]) => {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    return [dt, dd];
  }));
  document.body.dataset.readyMs = performance.now().toFixed(1);  // since navigation start
  document.body.dataset.ready = "true";
}

function showError(message) {
  const status = $("status");
  status.dataset.state = "error";
  status.textContent = `Error: ${message}`;
}

const worker = new Worker("worker.js", { type: "module" });
worker.onmessage = ({ data }) => {
  if (data.type === "progress") showProgress(data);
  else if (data.type === "ready") showReady(data);
  else if (data.type === "rtt") {
    $("rtt").textContent = `${data.median_ms.toFixed(2)} ms median of ${data.samples} pings`;
    $("rtt").dataset.ms = data.median_ms;
  } else if (data.type === "error") showError(data.message);
};
worker.onerror = (event) => showError(event.message || "the worker failed to start");
worker.postMessage({ type: "start", wsUrl: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws` });
