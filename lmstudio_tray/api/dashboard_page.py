# ruff: noqa: E501  (embedded JavaScript/CSS keep their own line lengths)
"""The dashboard page: HTML, CSS and plain JS (charts in inline SVG, no CDN, no build step).

Kept as Python strings so wheels and one-file bundles carry them without package-data rules. The script
only uses textContent and DOM calls for data (model names come from other programs), never innerHTML.
"""

from __future__ import annotations

INDEX_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lmstudio-tray dashboard</title>
<link rel="stylesheet" href="/dashboard/app.css">
<script src="/dashboard/app.js" defer></script>
</head>
<body>
<header>
  <h1>lmstudio-tray</h1>
  <span id="updated" class="muted">connecting...</span>
  <label>window
    <select id="since">
      <option value="24h">24 hours</option>
      <option value="7d" selected>7 days</option>
      <option value="30d">30 days</option>
      <option value="all">all</option>
    </select>
  </label>
  <span id="recording" class="badge"></span>
</header>
<main>
  <section>
    <h2>Instances</h2>
    <div id="instances" class="cards"></div>
  </section>
  <section>
    <h2>Usage and performance</h2>
    <p id="history-note" class="muted"></p>
    <div id="charts" class="charts"></div>
  </section>
  <section>
    <h2>Benchmarks</h2>
    <p id="bench-note" class="muted"></p>
    <div id="bench" class="charts"></div>
  </section>
  <section>
    <h2>Tips</h2>
    <ul id="tips"></ul>
  </section>
  <section>
    <h2>Models</h2>
    <table id="models"><thead><tr>
      <th>model</th><th>validations</th><th>turns</th><th>sessions ok</th><th>p50 turn</th><th>p95 turn</th>
      <th>tokens/s</th><th>out/in</th><th>context used p95</th><th>loads</th><th>load p50</th>
      <th>session median</th><th>sessions total</th>
    </tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Instances over the window</h2>
    <table id="uptime"><thead><tr>
      <th>instance</th><th>state</th><th>uptime</th><th>failures</th><th>load failures</th><th>session errors</th>
      <th>validate p50</th><th>LM Studio RSS</th><th>CPU avg</th><th>loaded size</th>
    </tr></thead><tbody></tbody></table>
  </section>
</main>
</body>
</html>
"""

APP_CSS = """
:root { --bg: #0f1419; --panel: #171d24; --text: #dfe6ee; --muted: #8a97a6; --ok: #3fb950; --warn: #d29922;
        --bad: #f85149; --accent: #58a6ff; --grid: #2a333d; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: var(--bg); color: var(--text); }
header { display: flex; gap: 16px; align-items: center; padding: 12px 20px; background: var(--panel);
         border-bottom: 1px solid var(--grid); }
header h1 { font-size: 18px; margin: 0; }
main { padding: 8px 20px 24px; }
h2 { font-size: 15px; color: var(--muted); text-transform: uppercase; letter-spacing: .05em; margin: 18px 0 8px; }
.muted { color: var(--muted); }
.badge { padding: 2px 8px; border-radius: 10px; background: var(--grid); font-size: 12px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: var(--panel); border: 1px solid var(--grid); border-radius: 8px; padding: 10px 14px;
        min-width: 280px; }
.card h3 { margin: 0 0 4px; font-size: 15px; }
.state { font-weight: 600; }
.state.ready, .state.idle { color: var(--ok); }
.state.loading { color: var(--warn); }
.state.offline, .state.error, .state.auth_failed { color: var(--bad); }
.card ul { margin: 6px 0 0; padding-left: 18px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: 12px; }
.chart { background: var(--panel); border: 1px solid var(--grid); border-radius: 8px; padding: 8px 10px; }
.chart h3 { margin: 0 0 4px; font-size: 13px; font-weight: 600; }
.chart svg { width: 100%; height: 140px; display: block; }
table { border-collapse: collapse; width: 100%; background: var(--panel); }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--grid); white-space: nowrap; }
th { color: var(--muted); font-weight: 500; }
#tips li { margin: 4px 0; }
select { background: var(--bg); color: var(--text); border: 1px solid var(--grid); }
"""

APP_JS = r"""
"use strict";
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

const fmt = {
  num: (v, d = 1) => (v === null || v === undefined) ? "-" : Number(v).toFixed(d),
  pct: (v) => (v === null || v === undefined) ? "-" : (100 * v).toFixed(0) + "%",
  bytes: (v) => (v === null || v === undefined) ? "-" : (v / 1e9).toFixed(2) + " GB",
  secs: (v) => (v === null || v === undefined) ? "-" : (v < 10 ? v.toFixed(2) : v.toFixed(0)) + " s",
  ms: (v) => (v === null || v === undefined) ? "-" : v.toFixed(2) + " ms",
  span: (v) => (v === null || v === undefined) ? "-" : v < 60 ? Math.round(v) + " s" : v < 3600 ? (v / 60).toFixed(1) + " min" : (v / 3600).toFixed(1) + " h",
};

async function getJSON(url) {
  const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (r.status === 401) { document.getElementById("updated").textContent = "signed out: run lmstudio-tray dashboard"; throw new Error("401"); }
  if (!r.ok) throw new Error(url + ": HTTP " + r.status);
  return r.json();
}

function renderInstances(live) {
  const box = document.getElementById("instances");
  box.replaceChildren();
  for (const inst of live.status.instances) {
    const loaded = inst.models.filter((m) => m.loaded);
    const list = el("ul");
    for (const m of loaded) {
      const ctx = m.instances.map((i) => i.context_length).filter(Boolean).join(", ");
      list.append(el("li", {}, m.key + (ctx ? " (ctx " + ctx + ")" : "") + (m.size_bytes ? ", " + fmt.bytes(m.size_bytes) : "")));
    }
    for (const l of inst.loads) list.append(el("li", {}, "loading " + l.model + (l.progress != null ? " " + fmt.pct(l.progress) : "")));
    if (!list.children.length) list.append(el("li", { class: "muted" }, "no model loaded"));
    box.append(el("div", { class: "card", "data-instance": inst.name },
      el("h3", {}, inst.name + (inst.name === live.status.active ? " (active)" : "")),
      el("div", {}, el("span", { class: "state " + inst.state }, inst.state), " ", el("span", { class: "muted" }, inst.url)),
      el("div", { class: "muted" }, "JIT " + (inst.jit === null ? "unknown" : inst.jit ? "on" : "off") +
        (inst.latency_ms != null ? ", poll " + fmt.ms(inst.latency_ms) : "") + (inst.error ? ", " + inst.error : "")),
      list));
  }
  const a = live.analytics;
  const badge = document.getElementById("recording");
  badge.textContent = a.recording ? "recording (" + a.written + " records)" : "not recording: " + (a.error || "off");
  document.getElementById("updated").textContent = "updated " + new Date(live.now * 1000).toLocaleTimeString();
}

function chart(title, buckets, series, unit, until) {
  const W = 380, H = 140, L = 44, B = 18, T = 6;
  const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  const values = buckets.flatMap((b) => series.map((s) => b[s.key])).filter((v) => v !== null && v !== undefined);
  const max = Math.max(1e-9, ...values);
  if (!values.length) svg.append(el("svg:text", { x: W / 2, y: H / 2, "text-anchor": "middle", "font-size": 12, fill: "#8a97a6" }, "no data in this window"));
  const x = (i) => L + (i + 0.5) * (W - L - 4) / buckets.length;
  const y = (v) => H - B - (v / max) * (H - B - T);
  for (const f of (values.length ? [0, 0.5, 1] : [0])) {
    svg.append(el("svg:line", { x1: L, x2: W - 4, y1: y(max * f), y2: y(max * f), stroke: "#2a333d" }));
    svg.append(el("svg:text", { x: L - 4, y: y(max * f) + 4, "text-anchor": "end", "font-size": 10, fill: "#8a97a6" },
      (max * f >= 100 ? (max * f).toFixed(0) : (max * f).toPrecision(2)) + (f === 1 ? unit : "")));
  }
  const bw = Math.max(1, (W - L - 4) / buckets.length - 2);
  for (const s of series) {
    if (s.bars) {
      buckets.forEach((b, i) => { if (b[s.key]) svg.append(el("svg:rect", { x: x(i) - bw / 2, y: y(b[s.key]), width: bw, height: H - B - y(b[s.key]), fill: s.color })); });
    } else {
      const pts = buckets.map((b, i) => b[s.key] == null ? null : x(i).toFixed(1) + "," + y(b[s.key]).toFixed(1)).filter(Boolean);
      if (pts.length) svg.append(el("svg:polyline", { points: pts.join(" "), fill: "none", stroke: s.color, "stroke-width": 2 }));
      buckets.forEach((b, i) => { if (b[s.key] != null) svg.append(el("svg:circle", { cx: x(i), cy: y(b[s.key]), r: 2.5, fill: s.color })); });
    }
  }
  const first = buckets[0], last = buckets[buckets.length - 1];
  if (first) {
    const lbl = (t) => new Date(t * 1000).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
    svg.append(el("svg:text", { x: L, y: H - 4, "font-size": 10, fill: "#8a97a6" }, lbl(first.t)));
    svg.append(el("svg:text", { x: W - 4, y: H - 4, "font-size": 10, fill: "#8a97a6", "text-anchor": "end" }, lbl(until || last.t)));
  }
  const legend = el("h3", {}, title + " ");
  for (const s of series) legend.append(el("span", { class: "muted" }, " \u25A0 " + s.label + " "));
  return el("div", { class: "chart" }, legend, svg);
}

function renderHistory(h) {
  const note = document.getElementById("history-note");
  const charts = document.getElementById("charts");
  charts.replaceChildren();
  if (h.empty) { note.textContent = h.message; return; }
  note.textContent = "";
  const b = h.series.buckets, u = h.series.until;
  charts.append(
    chart("Validations", b, [{ key: "verdicts", label: "all", color: "#58a6ff", bars: true }, { key: "blocked", label: "blocked", color: "#f85149", bars: true }], "", u),
    chart("Turns", b, [{ key: "turns", label: "turns", color: "#3fb950", bars: true }, { key: "turn_errors", label: "errors", color: "#f85149", bars: true }], "", u),
    chart("Tokens per second (p50)", b, [{ key: "tokens_per_s_p50", label: "tokens/s", color: "#d29922" }], " t/s", u),
    chart("Turn latency (p50)", b, [{ key: "turn_s_p50", label: "seconds", color: "#a371f7" }], " s", u),
    chart("Validate latency (p50)", b, [{ key: "validate_ms_p50", label: "ms", color: "#58a6ff" }], " ms", u),
    chart("Load time (p50)", b, [{ key: "load_s_p50", label: "seconds", color: "#db6d28" }], " s", u),
  );
  renderBench(h.bench || []);
  const tips = document.getElementById("tips");
  tips.replaceChildren();
  for (const s of h.suggestions) tips.append(el("li", { "data-kind": s.kind }, s.message));
  if (!h.suggestions.length) tips.append(el("li", { class: "muted" }, "nothing to suggest"));
  const models = document.querySelector("#models tbody");
  models.replaceChildren();
  for (const m of h.report.models) {
    models.append(el("tr", {}, ...[m.model, m.verdicts, m.turns, fmt.pct(m.session_success_rate), fmt.secs(m.latency_p50_s),
      fmt.secs(m.latency_p95_s), fmt.num(m.tokens_per_s), fmt.num(m.output_per_input, 2),
      m.context_used_p95 == null ? "-" : m.context_used_p95 + (m.loaded_context ? " / " + m.loaded_context : ""),
      m.loads + (m.load_failures ? " (" + m.load_failures + " failed)" : ""), fmt.secs(m.load_p50_s),
      fmt.span(m.session_median_s), m.sessions ? fmt.span(m.session_total_s) : "-"].map((v) => el("td", {}, v))));
  }
  const up = document.querySelector("#uptime tbody");
  up.replaceChildren();
  for (const i of h.report.instances) {
    up.append(el("tr", {}, ...[i.instance, i.state || "-", fmt.pct(i.uptime), i.failures, i.load_failures, i.session_errors,
      fmt.ms(i.validate_p50_ms), fmt.bytes(i.rss_bytes), i.cpu_percent_avg == null ? "-" : fmt.num(i.cpu_percent_avg) + "%",
      fmt.bytes(i.loaded_bytes)].map((v) => el("td", {}, v))));
  }
}

const SUITE_COLORS = { quick: "#58a6ff", coding: "#3fb950" };

// One model's bench runs: generated tokens/s over time, a line per suite, its spread (lowest-highest) as a band.
function benchChart(model, runs) {
  const W = 380, H = 140, L = 44, B = 18, T = 6;
  const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": model + " generated tokens/s" });
  const t0 = Math.min(...runs.map((r) => r.ts)), t1 = Math.max(...runs.map((r) => r.ts));
  const max = Math.max(1e-9, ...runs.map((r) => r.gen_tps_high ?? r.gen_tps ?? 0));
  const x = (t) => t1 > t0 ? L + (t - t0) / (t1 - t0) * (W - L - 10) : L + (W - L - 10) / 2;
  const y = (v) => H - B - (v / max) * (H - B - T);
  for (const f of [0, 0.5, 1]) {
    svg.append(el("svg:line", { x1: L, x2: W - 4, y1: y(max * f), y2: y(max * f), stroke: "#2a333d" }));
    svg.append(el("svg:text", { x: L - 4, y: y(max * f) + 4, "text-anchor": "end", "font-size": 10, fill: "#8a97a6" },
      (max * f).toFixed(0) + (f === 1 ? " t/s" : "")));
  }
  const legend = el("h3", {}, model + " ");
  const suites = [...new Set(runs.map((r) => r.suite + " v" + r.suite_version))];
  for (const suite of suites) {
    const rows = runs.filter((r) => r.suite + " v" + r.suite_version === suite && r.gen_tps != null);
    const color = SUITE_COLORS[rows.length ? rows[0].suite : ""] || "#d29922";
    const band = [...rows.map((r) => x(r.ts).toFixed(1) + "," + y(r.gen_tps_high ?? r.gen_tps).toFixed(1)),
      ...rows.slice().reverse().map((r) => x(r.ts).toFixed(1) + "," + y(r.gen_tps_low ?? r.gen_tps).toFixed(1))];
    if (rows.length > 1) svg.append(el("svg:polygon", { points: band.join(" "), fill: color, "fill-opacity": 0.2, class: "spread" }));
    if (rows.length > 1) svg.append(el("svg:polyline", { points: rows.map((r) => x(r.ts).toFixed(1) + "," + y(r.gen_tps).toFixed(1)).join(" "), fill: "none", stroke: color, "stroke-width": 2 }));
    for (const r of rows) {
      svg.append(el("svg:line", { x1: x(r.ts), x2: x(r.ts), y1: y(r.gen_tps_low ?? r.gen_tps), y2: y(r.gen_tps_high ?? r.gen_tps), stroke: color, class: "spread" }));
      const dot = el("svg:circle", { cx: x(r.ts), cy: y(r.gen_tps), r: 3, fill: color });
      dot.append(el("svg:title", {}, new Date(r.ts * 1000).toLocaleString() + ": " + fmt.num(r.gen_tps) + " t/s (" +
        fmt.num(r.gen_tps_low) + "-" + fmt.num(r.gen_tps_high) + "), " + suite + ", LM Studio " + (r.lmstudio_version || "unknown") +
        ", " + (r.quantization || "-") + ", ctx " + (r.context_length || "-")));
      svg.append(dot);
    }
    legend.append(el("span", { class: "muted" }, " \u25A0 " + suite + " "));
  }
  return el("div", { class: "chart", "data-bench-model": model }, legend, svg);
}

function renderBench(runs) {
  const box = document.getElementById("bench");
  box.replaceChildren();
  document.getElementById("bench-note").textContent = runs.length ? "generated tokens/s per bench run (median, lowest-highest); compare runs of the same suite version" :
    "no bench in this window: run lmstudio-tray bench";
  const models = [...new Set(runs.map((r) => r.model))];
  for (const m of models) box.append(benchChart(m, runs.filter((r) => r.model === m)));
}

async function refreshLive() { try { renderInstances(await getJSON("/dashboard/api/live")); } catch (e) { console.warn(e); } }
async function refreshHistory() {
  const since = document.getElementById("since").value;
  try { renderHistory(await getJSON("/dashboard/api/history?since=" + encodeURIComponent(since))); } catch (e) { console.warn(e); }
  document.body.dataset.loaded = "1";
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("since").addEventListener("change", refreshHistory);
  refreshLive(); refreshHistory();
  setInterval(refreshLive, 2000);
  setInterval(refreshHistory, 30000);
});
"""
