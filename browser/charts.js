// The page's charts: the context's time series in uPlot (a small chart library the edge
// serves from build/web, provisioned from the npm registry and sha256-checked like the
// runtime), and the rest in plain SVG and HTML.

export const TIER_COLOURS = { device: "#2f6fde", uplink: "#8fb3f0", edge: "#13795b", cloud: "#a05fd3", downlink: "#f0b35f" };
export const ANSWER_COLOURS = { browser: TIER_COLOURS.device, edge: TIER_COLOURS.edge, cloud: TIER_COLOURS.cloud };
export const TIER_WORDS = { browser: "this device", edge: "the edge", cloud: "the cloud" };  // an answer's tier, said
export const WINDOW_S = 60;  // the time series show this last stretch of time
const SVG = "http://www.w3.org/2000/svg";
const FONT = "11px system-ui, sans-serif";
const MUTED = "#5b6375";
let uPlot = null;  // the chart library, once loadCharts() imported it

function svg(tag, attributes = {}, text = undefined) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

const ms = (value) => `${value < 10 ? value.toFixed(1) : value.toFixed(0)} ms`;

// A colour key: a swatch and its text, for legends.
export function key(colour, text, data = {}) {
  const element = document.createElement("span");
  element.className = "key";
  element.style.setProperty("--colour", colour);
  element.textContent = text;
  Object.assign(element.dataset, data);
  return element;
}

// Import uPlot and its stylesheet, from the paths assets.json names.
export async function loadCharts(assets) {
  const style = document.createElement("link");
  style.rel = "stylesheet";
  style.href = assets.uplot.css;
  document.head.append(style);
  uPlot = (await import(assets.uplot.module)).default;
}

// One figure of the context: a series over up to the last WINDOW_S seconds (the window
// grows in 10 s steps until the series is that old), time on the x axis (seconds before
// now), the value on the y axis in its unit, the latest value in the caption. `points`
// are [time in s, value]; the chart is made once and then updated.
export function timeSeries(figure, { label, unit, colour, format }, points, now) {
  const latest = points.length ? points[points.length - 1][1] : null;
  figure.querySelector("figcaption").textContent = `${label}: ${latest === null ? "…" : format(latest)}`;
  const age = points.length ? now - points[0][0] : 0;
  figure.windowS = Math.min(WINDOW_S, Math.max(10, 10 * Math.ceil(age / 10)));
  if (!uPlot) return;
  const data = [points.map(([t]) => t - now), points.map(([, v]) => v)];
  const width = Math.max(200, Math.min(300, figure.parentElement.clientWidth));
  if (figure.chart && figure.chart.width === width) {
    figure.chart.setData(data);
    return;
  }
  if (figure.chart) figure.chart.destroy();
  const axis = { font: FONT, labelFont: FONT, stroke: MUTED, labelSize: 16, grid: { stroke: "#eceef3" }, ticks: { stroke: "#ccd1db" } };
  figure.chart = new uPlot({
    width, height: 140, legend: { show: false }, cursor: { show: false },
    scales: { x: { time: false, range: () => [-figure.windowS, 0] } },
    axes: [
      { ...axis, label: "seconds ago", size: 26, incrs: [1, 2, 5, 10, 15, 30],
        values: (u, splits) => splits.map((v) => String(-v)) },
      { ...axis, label: unit, size: 44 },
    ],
    series: [{}, { label, stroke: colour, width: 1.5 }],
  }, data, figure.querySelector(".plot"));
}

// One answer's latency split by tier, as a stacked bar and a legend.
export function timingBar(timing) {
  const cloud = (timing.edge_to_cloud_ms || 0) + (timing.cloud_compute_ms || 0) + (timing.cloud_to_edge_ms || 0)
    + (timing.cloud_round_trip_ms || 0);  // the last, from a cloud that does not split it (Triton)
  const parts = [
    ["device", timing.device_compute_ms], ["uplink", timing.uplink_ms],
    ["edge", (timing.edge_total_ms || 0) - cloud], ["cloud", cloud], ["downlink", timing.downlink_ms],
  ].filter(([, value]) => value > 0);
  const total = parts.reduce((n, [, value]) => n + value, 0);
  const bar = document.createElement("div");
  bar.className = "timing-bar";
  bar.setAttribute("role", "img");
  bar.setAttribute("aria-label", `latency by tier: ${parts.map(([name, value]) => `${name} ${value.toFixed(1)} ms`).join(", ")}`);
  for (const [name, value] of parts) {
    const segment = document.createElement("span");
    segment.style.width = `${(100 * value) / total}%`;
    segment.style.background = TIER_COLOURS[name];
    segment.title = `${name}: ${value.toFixed(2)} ms`;
    bar.append(segment);
  }
  const legend = document.createElement("p");
  legend.className = "muted";
  legend.textContent = parts.map(([name, value]) => `${name} ${value.toFixed(1)} ms`).join(" · ");
  return [bar, legend];
}

// The q-quantile of sorted values, by nearest rank.
export function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

// Tick values for an axis from lo to hi: 1-2-5 steps on a log axis, round steps otherwise.
function ticks(lo, hi, log) {
  if (log) {
    const out = [];
    for (let decade = 10 ** Math.floor(Math.log10(lo)); decade <= hi; decade *= 10) {
      for (const m of [1, 2, 5]) if (m * decade >= lo && m * decade <= hi) out.push(m * decade);
    }
    return out.length > 6 ? out.filter((v) => Math.abs(Math.log10(v) % 1) < 1e-9) : out;
  }
  const raw = (hi - lo) / 4;
  const step = [1, 2, 5, 10].map((m) => m * 10 ** Math.floor(Math.log10(raw))).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) out.push(Number(v.toPrecision(6)));
  return out;
}

// Histogram of end-to-end latency over a run's answers, each bin stacked by the tier that
// answered, with p50 and p95 marked. The axis is logarithmic when latencies span more
// than a decade (a branch exit takes milliseconds, a trip to the cloud tens of them).
const TICK_CHAR_PX = 6.5;  // width of one digit of a 10 px tick label, a little generous

export function latencyHistogram(answers, width = 480) {
  const figure = document.createElement("figure");
  figure.className = "histogram";
  const times = answers.map((a) => a.timing.total_ms);
  if (!times.length) return figure;
  const sorted = [...times].sort((a, b) => a - b);
  const p50 = quantile(sorted, 0.5), p95 = quantile(sorted, 0.95);
  const log = sorted[0] > 0 && sorted[sorted.length - 1] / sorted[0] > 10;
  const lo = log ? sorted[0] / 1.1 : Math.max(0, sorted[0] - 0.5);
  const hi = log ? sorted[sorted.length - 1] * 1.1 : sorted[sorted.length - 1] + 0.5;
  const height = 162, left = 28, right = 8, top = 28, bottom = 34;
  const plotWidth = width - left - right, plotHeight = height - top - bottom;
  const x = log
    ? (v) => left + (Math.log(v / lo) / Math.log(hi / lo)) * plotWidth
    : (v) => left + ((v - lo) / (hi - lo)) * plotWidth;
  const bins = Math.max(6, Math.min(30, Math.floor(plotWidth / 14), Math.round(2 * Math.sqrt(times.length))));
  const edge = (i) => (log ? lo * (hi / lo) ** (i / bins) : lo + ((hi - lo) * i) / bins);
  const counts = Array.from({ length: bins }, () => ({ browser: 0, edge: 0, cloud: 0 }));
  answers.forEach((answer, i) => {
    const t = times[i];
    const bin = Math.min(bins - 1, Math.floor(log ? (bins * Math.log(t / lo)) / Math.log(hi / lo) : (bins * (t - lo)) / (hi - lo)));
    counts[bin][answer.tier in ANSWER_COLOURS ? answer.tier : "browser"] += 1;
  });
  const most = Math.max(...counts.map((c) => c.browser + c.edge + c.cloud));
  const y = (n) => top + plotHeight - (n / most) * plotHeight;

  const plot = svg("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", height, "aria-hidden": "true" });
  counts.forEach((count, i) => {
    let stacked = 0;
    for (const tier of ["browser", "edge", "cloud"]) {
      if (!count[tier]) continue;
      const x0 = x(edge(i)), x1 = x(edge(i + 1));
      const rect = svg("rect", { class: "bar", x: x0 + 0.5, width: Math.max(1, x1 - x0 - 1), y: y(stacked + count[tier]),
        height: y(stacked) - y(stacked + count[tier]), fill: ANSWER_COLOURS[tier], "data-tier": tier, "data-count": count[tier] });
      rect.append(svg("title", {}, `${ms(edge(i))} to ${ms(edge(i + 1))}: ${count[tier]} from ${TIER_WORDS[tier]}`));
      plot.append(rect);
      stacked += count[tier];
    }
  });
  plot.append(svg("line", { x1: left, x2: width - right, y1: top + plotHeight, y2: top + plotHeight, stroke: MUTED }));
  // Tick labels that would touch their neighbour (on a phone, say) are left out.
  let free = 0;
  for (const value of ticks(lo, hi, log)) {
    const at = x(value), half = (String(value).length * TICK_CHAR_PX) / 2;
    if (at - half < free || at + half > width) continue;
    free = at + half + 6;
    plot.append(svg("line", { x1: at, x2: at, y1: top + plotHeight, y2: top + plotHeight + 4, stroke: MUTED }));
    plot.append(svg("text", { x: at, y: top + plotHeight + 15, "text-anchor": "middle", class: "tick" }, String(value)));
  }
  plot.append(svg("text", { x: left + plotWidth / 2, y: height - 3, "text-anchor": "middle", class: "tick" },
    `end-to-end latency (ms${log ? ", log scale" : ""})`));
  plot.append(svg("text", { x: left - 4, y: top + 4, "text-anchor": "end", class: "tick" }, String(most)));
  plot.append(svg("text", { x: left - 4, y: top + plotHeight, "text-anchor": "end", class: "tick" }, "0"));
  // The quantile labels sit on two rows, so that close quantiles do not overlap.
  [["p50", p50, 10], ["p95", p95, 24]].forEach(([name, value, row]) => {
    const at = x(value);
    plot.append(svg("line", { class: `quantile ${name}`, x1: at, x2: at, y1: row + 2, y2: top + plotHeight,
      stroke: "#1d2433", "stroke-dasharray": "3 2" }));
    plot.append(svg("text", { x: at, y: row, "text-anchor": at > width / 2 ? "end" : "start", class: "tick" },
      `${name} ${ms(value)}`));
  });

  const byTier = Object.fromEntries(Object.keys(ANSWER_COLOURS).map((tier) => [tier, answers.filter((a) => a.tier === tier).length]));
  const caption = document.createElement("figcaption");
  for (const [tier, n] of Object.entries(byTier)) caption.append(key(ANSWER_COLOURS[tier], `${TIER_WORDS[tier]} ${n}`));
  caption.append(`end-to-end latency of ${times.length} answers${log ? ", log scale" : ""}: p50 ${ms(p50)}, p95 ${ms(p95)}`);
  figure.setAttribute("role", "img");
  figure.setAttribute("aria-label", `Latency histogram of ${times.length} answers: p50 ${ms(p50)}, p95 ${ms(p95)}; `
    + Object.entries(byTier).map(([tier, n]) => `${n} from ${TIER_WORDS[tier]}`).join(", "));
  Object.assign(figure.dataset, { count: times.length, p50, p95, scale: log ? "log" : "linear" });
  figure.append(plot, caption);
  return figure;
}
