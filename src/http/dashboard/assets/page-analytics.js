// Analytics: volume per minute, success and error rate, latency percentiles, rejected
// requests by status, event types and consumer lag, for 1 h, 24 h or 7 d.

import { get } from "./api.js";
import { barChart, hbars, rateBar } from "./charts.js";
import { clear, emptyState, errorBox, field, fmtMs, fmtNum, fmtPct, h } from "./ui.js";

const WINDOWS = [
  { id: "1h", label: "1 hour", minutes: 60 },
  { id: "24h", label: "24 hours", minutes: 24 * 60 },
  { id: "7d", label: "7 days", minutes: 7 * 24 * 60 },
];
const BARS_MAX = 120;
const REFRESH_MS = 10000;

export async function render(ctx) {
  const { main, params } = ctx;
  const flows = await ctx.refreshFlows();
  const windowId = WINDOWS.some((w) => w.id === params.get("window")) ? params.get("window") : "1h";
  const win = WINDOWS.find((w) => w.id === windowId);
  const flowId = params.get("flow") || (flows[0] && flows[0].id) || "all";
  const go = (extra) => ctx.navigate("analytics", Object.assign({ flow: flowId, window: windowId }, extra));

  const select = h("select", { on: { change: () => go({ flow: select.value }) } },
    h("option", { value: "all", selected: flowId === "all" }, "All flows"),
    flows.map((f) => h("option", { value: f.id, selected: f.id === flowId }, `${f.name} (${f.id})`)));
  const windows = h("div.segmented", { role: "group", "aria-label": "Time window" },
    WINDOWS.map((w) => h("button", { type: "button", "aria-pressed": String(w.id === windowId), on: { click: () => go({ window: w.id }) } }, w.label)));
  // Not a live region: it is redrawn every 10 s, and a screen reader would read it all.
  const body = h("div");
  main.append(
    h("div.page-head", h("h1", "Analytics"),
      h("div.toolbar", field("Flow", select), h("div", h("span.muted", { style: "display:block;font-size:.88rem;font-weight:550" }, "Window"), windows),
        h("button.secondary", { type: "button", on: { click: () => load() } }, "Refresh"))),
    body);

  async function load() {
    try {
      if (flowId === "all") {
        const data = await get(`/analytics?window=${windowId}`);
        clear(body).append(...workspaceView(data));
      } else {
        const data = await get(`/flows/${encodeURIComponent(flowId)}/analytics?window=${windowId}`);
        clear(body).append(...flowView(data, win));
      }
    } catch (e) {
      clear(body).append(errorBox(e));
    }
  }
  await load();
  const timer = setInterval(load, REFRESH_MS);
  return () => clearInterval(timer);
}

function card(label, value, testid) {
  return h("div.card", h("div.label", label), h("div.value", { "data-testid": testid }, value));
}

/** The cards a flow's and a workspace's summary share: counts and rates. */
function countCards(d) {
  const rejected = Object.values(d.rejected || {}).reduce((a, b) => a + b, 0);
  return [
    card("Received", fmtNum(d.received), "stat-received"),
    card("Accepted", fmtNum(d.accepted), "stat-accepted"),
    card("Duplicates", fmtNum(d.duplicates), "stat-duplicates"),
    card("Rejected", fmtNum(rejected), "stat-rejected"),
    card("Success rate", fmtPct(d.successRate), "stat-success"),
    card("Error rate", fmtPct(d.errorRate), "stat-error"),
  ];
}

function flowView(d, win) {
  const cards = h("div.cards",
    countCards(d),
    card("Latency p50", fmtMs(d.latencyMs && d.latencyMs.p50), "stat-p50"),
    card("Latency p99", fmtMs(d.latencyMs && d.latencyMs.p99), "stat-p99"));

  const volume = volumeSeries(d.volume || [], win.minutes);
  const total = volume.reduce((a, p) => a + p.value, 0);
  const perBar = volume.length ? Math.round(win.minutes / volume.length) : 1;
  const volumePanel = h("section.panel", { "aria-labelledby": "vol-h" },
    h("h2#vol-h", `Events stored per ${perBar === 1 ? "minute" : `${perBar} minutes`}`),
    total ? barChart(volume, { summary: `Volume: ${total} events in the window` }) : emptyState("No events in this window."));

  const rates = h("section.panel", { "aria-labelledby": "rate-h" }, h("h2#rate-h", "Success and error rate"),
    d.received ? [rateBar(d.successRate, d.errorRate),
      h("p.muted", `${fmtPct(d.successRate)} of ${fmtNum(d.received)} requests answered 2xx; ${fmtPct(d.errorRate)} were rejected.`)]
      : emptyState("No requests in this window."));
  const rejectedItems = Object.entries(d.rejected || {}).map(([status, n]) => ({ label: `HTTP ${status}`, value: n })).sort((a, b) => b.value - a.value);
  const rejectedPanel = h("section.panel", { "aria-labelledby": "rej-h" }, h("h2#rej-h", "Rejected by status"),
    rejectedItems.length ? hbars(rejectedItems, { bad: true }) : emptyState("Nothing was rejected."));

  const lat = d.latencyMs || {};
  const latencyPanel = h("section.panel", { "aria-labelledby": "lat-h" }, h("h2#lat-h", "Acknowledgement latency"),
    d.received
      ? barChart([{ label: "p50", value: lat.p50 || 0 }, { label: "p95", value: lat.p95 || 0 }, { label: "p99", value: lat.p99 || 0 }]
        .map((p) => Object.assign(p, { title: `${p.label}: ${fmtMs(p.value)}` })),
      { summary: `Latency p50 ${fmtMs(lat.p50)}, p95 ${fmtMs(lat.p95)}, p99 ${fmtMs(lat.p99)}`, height: 160, labelEvery: 1 })
      : emptyState("No requests in this window."));

  const types = Object.entries(d.eventTypes || {}).map(([t, n]) => ({ label: t, value: n })).sort((a, b) => b.value - a.value).slice(0, 15);
  const typesPanel = h("section.panel", { "aria-labelledby": "types-h" }, h("h2#types-h", "Event types"),
    types.length ? hbars(types) : emptyState("No events in this window."));
  const lag = (d.consumers || []).map((c) => ({ label: c.name, value: c.lag }));
  const lagPanel = h("section.panel", { "aria-labelledby": "lag-h" }, h("h2#lag-h", "Consumer lag (events behind)"),
    lag.length ? hbars(lag) : emptyState("No consumers yet. A consumer appears once it polls or commits."));

  return [cards, volumePanel, h("div.grid2", rates, latencyPanel), h("div.grid2", rejectedPanel, typesPanel), lagPanel];
}

/** Fills the window with zeros where no events were stored, then groups into at most BARS_MAX bars. */
function volumeSeries(points, minutes) {
  const now = Math.floor(Date.now() / 60000);
  const start = now - minutes + 1;
  const counts = new Map();
  for (const p of points) {
    const ms = typeof p.minute === "number" ? p.minute : Date.parse(p.minute);
    counts.set(Math.floor(ms / 60000), p.count);
  }
  const per = Math.max(1, Math.ceil(minutes / BARS_MAX));
  const out = [];
  for (let m = start; m <= now; m += per) {
    let value = 0;
    for (let k = m; k < m + per && k <= now; k += 1) value += counts.get(k) || 0;
    const d = new Date(m * 60000);
    const label = minutes > 24 * 60
      ? d.toLocaleDateString(undefined, { month: "short", day: "numeric" })
      : d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
    out.push({ label, value, title: `${d.toLocaleString()}: ${value} events` });
  }
  return out;
}

function workspaceView(d) {
  const cards = h("div.cards", countCards(d));
  const rows = (d.flows || []).map((f) => {
    return h("tr",
      h("td", f.name),
      h("td.num", fmtNum(f.received)),
      h("td.num", fmtNum(f.accepted)),
      h("td.num", fmtNum(f.duplicates)),
      h("td.num", fmtNum(Math.max(0, f.received - f.accepted - f.duplicates))),
      h("td.num", fmtPct(f.successRate)));
  });
  const table = rows.length
    ? h("div.table-wrap", h("table", h("thead", h("tr", ["Flow", "Received", "Accepted", "Duplicates", "Rejected", "Success rate"]
      .map((t, i) => h(i ? "th.num" : "th", { scope: "col" }, t)))), h("tbody", rows)))
    : emptyState("No flows yet.");
  return [cards, h("section.panel", { "aria-labelledby": "per-h" }, h("h2#per-h", "Per flow"), table)];
}
