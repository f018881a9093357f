// Start-up on the page: the worker's load steps as steps (only the download knows its
// fraction), and whether this load was cold or warm, with the times to ready and to the
// first answer remembered per browser.

const $ = (id) => document.getElementById(id);
const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;
export const seconds = (ms) => `${(ms / 1000).toFixed(2)} s`;

const STEPS = ["download", "python", "packages", "model"];

// Only the download knows its fraction; the other steps show as steps, the bar as busy.
export function showProgress({ phase, step, loaded, total, transferredTotal }) {
  $("load-step").textContent = step;
  if (phase === "download") $("load-progress").value = total ? (100 * loaded) / total : 0;
  else $("load-progress").removeAttribute("value");
  const at = STEPS.indexOf(phase);
  $("load-steps").querySelectorAll("li").forEach((item, k) => {
    item.dataset.state = k < at ? "done" : k === at ? "active" : "pending";
  });
  $("load-bytes").textContent = `${mb(loaded)} of ${mb(total)} (${mb(transferredTotal)} over the wire, compressed)`;
}

// Every step done, each with its time (seconds by step, from the worker).
export function finishSteps(times) {
  $("load-step").textContent = "Runtime loaded";
  $("load-progress").value = 100;
  $("load-steps").querySelectorAll("li").forEach((item) => {
    item.dataset.state = "done";
    item.querySelector(".step-time").textContent = seconds(times[item.dataset.step] || 0);
  });
}

export function definitionList(element, rows) {
  element.replaceChildren(...Object.entries(rows).flatMap(([k, v]) => {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    return [dt, dd];
  }));
}

const START_KEY = "strata.startup";

// Cold if the runtime's files crossed the network, warm if the HTTP cache served them:
// the worker's Resource Timing says how many bytes each download transferred.
export function cacheState({ transfer_bytes: sent, encoded_bytes: encoded }) {
  if (!encoded) return "unknown";
  return sent > 0.5 * encoded ? "cold" : sent < 0.1 * encoded ? "warm" : "partly cached";
}

function remembered() {
  try { return JSON.parse(localStorage.getItem(START_KEY)) || {}; } catch { return {}; }
}

export function showStartUp(load) {
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
