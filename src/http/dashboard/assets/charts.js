// Charts drawn as inline SVG and plain HTML: no chart library, no external service.

import { fmtNum, h } from "./ui.js";

const SVG = "http://www.w3.org/2000/svg";

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/**
 * Vertical bars. points: [{label, value, title?}]; `label` is shown for a few bars only.
 * `summary` becomes the chart's accessible name.
 */
export function barChart(points, { summary, height = 200, bad = false, labelEvery } = {}) {
  const width = 720;
  const left = 48;
  const bottom = 24;
  const top = 10;
  const plotW = width - left - 8;
  const plotH = height - top - bottom;
  const max = niceMax(Math.max(0, ...points.map((p) => p.value)));
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": summary || "chart", preserveAspectRatio: "none" });
  for (const frac of [0, 0.5, 1]) {
    const y = top + plotH - frac * plotH;
    svg.append(s("line", { class: "axis", x1: left, x2: width - 8, y1: y, y2: y }));
    svg.append(s("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, fmtNum(Math.round(max * frac * 100) / 100)));
  }
  const n = Math.max(points.length, 1);
  const step = plotW / n;
  const barW = Math.max(1, step * 0.8);
  const every = labelEvery || Math.max(1, Math.ceil(n / 6));
  points.forEach((p, i) => {
    const bh = (p.value / max) * plotH;
    const x = left + i * step + (step - barW) / 2;
    const rect = s("rect", { class: bad ? "bar bad" : "bar", x, y: top + plotH - bh, width: barW, height: Math.max(bh, 0) },
      s("title", {}, p.title || `${p.label}: ${fmtNum(p.value)}`));
    svg.append(rect);
    if (i % every === 0 && p.label) {
      svg.append(s("text", { x: left + i * step + step / 2, y: height - 6, "text-anchor": "middle" }, p.label));
    }
  });
  return svg;
}

/** Horizontal bars with the value at the end: [{label, value}]. */
export function hbars(items, { bad = false, unit = "" } = {}) {
  const max = Math.max(1, ...items.map((i) => i.value));
  return h("div.hbars", items.map((i) => [
    h("span", i.label),
    h("div.track", { "aria-hidden": "true" }, h(bad ? "div.fill.bad" : "div.fill", { style: `width:${(i.value / max) * 100}%` })),
    h("span.mono", `${fmtNum(i.value)}${unit}`),
  ]));
}

/** A success/error split as one stacked bar. */
export function rateBar(success, error) {
  const ok = Math.max(0, Math.min(1, success || 0));
  const bad = Math.max(0, Math.min(1, error || 0));
  return h("div.rate", { role: "img", "aria-label": `success ${(ok * 100).toFixed(1)}%, errors ${(bad * 100).toFixed(1)}%` },
    h("div.ok", { style: `width:${ok * 100}%` }),
    h("div.bad", { style: `width:${bad * 100}%` }));
}
