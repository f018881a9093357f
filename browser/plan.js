// The plan on the page: the strip (one cell per block, coloured by tier, with a legend),
// the plan in words, the goal form (a budget is checked where it is typed) and the form
// that fixes a plan by hand (the worker refuses a plan that breaks privacy; the form
// says why and shows the plan in force again).

import { key, TIER_COLOURS } from "./charts.js";

const $ = (id) => document.getElementById(id);
const TIERS = { device: "this device", edge: "the edge", cloud: "the cloud" };
const tierOf = (plan, k) => (k < plan.a ? "device" : k < plan.b ? "edge" : "cloud");

let model = null;  // { blocks, block_names }
let shown = null;  // the last plan update shown

// The cut in words, blocks counted from 1: "blocks 1–3 on this device, 4–7 on the edge".
export function planWords(plan, blocks) {
  const parts = [[0, plan.a, "on this device"], [plan.a, plan.b, "on the edge"], [plan.b, blocks, "in the cloud"]]
    .filter(([from, to]) => to > from);
  const text = parts.map(([from, to, where]) => `${to - from === 1 ? from + 1 : `${from + 1}–${to}`} ${where}`);
  const relay = plan.a === plan.b && plan.b < blocks ? " (the edge relays)" : "";
  return `${parts[0][1] - parts[0][0] === 1 ? "block" : "blocks"} ${text.join(", ")}${relay}`;
}

// The cut in short, for a table: the blocks on this device · the edge · the cloud, "–" for none.
export function planCells(plan, blocks) {
  const range = (from, to) => (to <= from ? "–" : to - from === 1 ? `${from + 1}` : `${from + 1}–${to}`);
  return `${range(0, plan.a)} · ${range(plan.a, plan.b)} · ${range(plan.b, blocks)}`;
}

// The plan's other settings in words: the model variant, the branch (a model made by
// `strata split` has none) and the codec.
function settingsWords(plan) {
  const variant = plan.variant ? `pruned variant ${plan.variant}` : "the unpruned model";
  const branch = model.bundle_bytes ? `, binary branch ${plan.branch ? "on" : "off"}` : "";
  const sent = plan.a < model.blocks ? `, tensors sent as ${plan.codec}` : "";
  return `${variant}${branch}${sent}`;
}

function showMessage(text) {
  $("plan-message").textContent = text;
}

function manualPlan() {
  return {
    a: Number($("plan-a").value), b: Number($("plan-b").value),
    codec: $("plan-codec").value, branch: $("plan-branch").checked,
  };
}

function fillForm(plan) {
  $("plan-a").value = plan.a; $("plan-b").value = plan.b;
  $("plan-codec").value = plan.codec; $("plan-branch").checked = plan.branch;
}

// A budget typed by a person: a number of milliseconds above 0, or null.
function typedBudget() {
  const text = $("budget").value.trim();
  const value = Number(text);
  return text && Number.isFinite(value) && value > 0 ? value : null;
}

export function setUpPlan({ loaded, initial, callWorker, onError }) {
  model = loaded;
  $("plan-legend").replaceChildren(...Object.entries(TIERS).map(([tier, words]) => key(TIER_COLOURS[tier], words, { tier })));
  const options = (select, from, to) => select.replaceChildren(...Array.from({ length: to - from + 1 }, (_, i) => {
    const option = document.createElement("option");
    option.value = option.textContent = String(from + i);
    return option;
  }));
  options($("plan-a"), 0, model.blocks);
  options($("plan-b"), 0, model.blocks);
  fillForm(initial);
  $("plan-branch").closest("label").hidden = !model.bundle_bytes;

  const applyPlan = () => {
    if (Number($("plan-a").value) === 0) $("plan-branch").checked = false;
    if (Number($("plan-b").value) < Number($("plan-a").value)) $("plan-b").value = $("plan-a").value;
    callWorker("set_plan", $("plan-fixed").checked ? manualPlan() : null).then(() => showMessage(""), (error) => {
      showMessage(`${error.message}`.replace(/^refused: /, "Refused: "));  // the worker says why
      if (shown) fillForm(shown.plan);  // the form shows the plan in force again
    });
  };
  const applyGoal = () => {
    const kind = $("goal").value;
    const budget = kind === "accuracy" ? typedBudget() : null;
    $("budget").disabled = kind !== "accuracy";  // the other goals ignore it
    const refused = kind === "accuracy" && budget === null;
    $("budget").setAttribute("aria-invalid", String(refused));
    $("budget-message").textContent = refused
      ? "Type a budget above 0 ms: the accuracy goal picks the most accurate plan that meets it." : "";
    if (refused) return;
    callWorker("set_goal", kind, budget, $("privacy").checked).catch(onError);
  };
  // Enter in a field submits its form: apply the change, never reload the page.
  for (const [form, apply] of [["plan-form", applyPlan], ["goal-form", applyGoal]]) {
    $(form).addEventListener("change", apply);
    $(form).addEventListener("submit", (event) => { event.preventDefault(); apply(); });
  }
  $("budget").addEventListener("input", () => {
    if (typedBudget() !== null) $("budget-message").textContent = "";
  });
  showPlan({ plan: initial, auto: true, predicted_ms: null, changed: false, reason: "" });
}

// A plan update from the worker: the strip, the plan in words, and whether it meets the budget.
export function showPlan(update) {
  const { plan } = update;
  const strip = $("plan-strip");
  strip.replaceChildren(...model.block_names.map((name, k) => {
    const cell = document.createElement("span");
    const tier = tierOf(plan, k);
    cell.className = `block ${tier}`;
    cell.style.background = TIER_COLOURS[tier];
    cell.textContent = `${k + 1} ${name}`;
    const onDevice = k < plan.a && update.executors;  // which executor runs it here: numpy or onnxruntime-web
    cell.title = `block ${k + 1}, ${name}: ${TIERS[tier]}`
      + `${onDevice ? ` (${update.executors[k] === "ort" ? "onnxruntime-web" : "numpy"})` : ""}`;
    return cell;
  }));
  const words = planWords(plan, model.blocks);
  strip.setAttribute("aria-label", `The plan: ${words}`);
  Object.assign(strip.dataset, { a: plan.a, b: plan.b, codec: plan.codec, branch: plan.branch, auto: update.auto,
    variant: plan.variant });
  const predicted = update.predicted_ms == null ? "No prediction for this plan yet"
    : `Predicted ${update.predicted_ms.toFixed(1)} ms per image, ${update.energy_mj.toFixed(1)} mJ on this device`;
  $("plan-summary").textContent = `${update.auto ? "The planner's plan" : "Fixed by hand"}: ${words}; `
    + `${settingsWords(plan)}. ${predicted}${update.reason ? `. ${update.reason}` : ""}.`;
  const budget = $("goal").value === "accuracy" ? typedBudget() : null;
  const missed = budget !== null && update.meets_budget === false;
  const miss = update.auto ? `No plan meets the ${budget} ms budget: the fastest predicted takes`
    : `The plan fixed by hand misses the ${budget} ms budget: predicted`;
  $("budget-note").textContent = missed ? `${miss} ${update.predicted_ms.toFixed(1)} ms per image.` : "";
  $("budget-note").dataset.missed = String(missed);
  if (!update.auto) fillForm(plan);
  if (!update.auto && update.reason) showMessage(`${update.reason[0].toUpperCase()}${update.reason.slice(1)}.`);
  if (update.changed) strip.dataset.changes = String(Number(strip.dataset.changes || 0) + 1);
  shown = update;
}

export const currentPlan = () => shown && shown.plan;
