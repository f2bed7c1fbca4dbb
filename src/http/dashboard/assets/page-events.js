// Events: a live list (SSE) of a flow's events, filters, jumps by offset or time, paging
// through history, the payload of the selected event, and the request log beside it
// with rejected attempts and their reasons.

import { follow, get } from "./api.js";
import { clear, emptyState, errorBox, field, flowPage, flowSelect, fmtMs, fmtTime, h, pretty, statusBadge } from "./ui.js";

const PAGE = 50;
const LIVE_ROWS_MAX = 200;
const REQUESTS_REFRESH_MS = 3000;

export async function render(ctx) {
  const { main, params } = ctx;
  const page = await flowPage(ctx, "Events", "No flows yet. Create a flow first; its events show up here.");
  if (!page) return null;
  const { flows, flow } = page;
  const type = params.get("type") || "";
  const from = params.get("from");
  const since = params.get("since");
  const live = from === null && since === null;
  const go = (extra) => ctx.navigate("events", Object.assign({ flow: flow.id, type }, extra));

  // Toolbar: flow, type filter, jumps, live.
  const typeInput = h("input", { name: "type", value: type, placeholder: "any type", spellcheck: "false" });
  const offsetInput = h("input", { type: "number", name: "from", min: 0, step: 1, value: from ?? "" });
  const timeInput = h("input", { type: "datetime-local", name: "since", step: 1 });
  if (since) {
    const d = new Date(since);
    if (!Number.isNaN(d.getTime())) timeInput.value = toLocalInput(d);
  }
  const liveDot = h("span.live-dot", { "aria-hidden": "true" });
  const liveButton = h("button.secondary", { type: "button", "aria-pressed": String(live), on: { click: () => go({}) } },
    liveDot, live ? "Live" : "Go live");
  main.append(h("div.panel", h("div.toolbar",
    field("Flow", flowSelect(flows, flow.id, (id) => ctx.navigate("events", { flow: id }))),
    h("form.toolbar", { on: { submit: (e) => { e.preventDefault(); go({ type: typeInput.value.trim(), from: from ?? undefined, since: since ?? undefined }); } } },
      field("Event type", typeInput), h("button.secondary", { type: "submit" }, "Filter")),
    h("form.toolbar", { on: { submit: (e) => { e.preventDefault(); if (offsetInput.value !== "") go({ from: offsetInput.value }); } } },
      field("Jump to offset", offsetInput), h("button.secondary", { type: "submit" }, "Go")),
    h("form.toolbar", {
      on: {
        submit: (e) => {
          e.preventDefault();
          const d = new Date(timeInput.value);
          if (!Number.isNaN(d.getTime())) go({ since: d.toISOString() });
        },
      },
    }, field("Jump to time", timeInput), h("button.secondary", { type: "submit" }, "Go")),
    liveButton)));

  const status = h("p.muted", { "aria-live": "polite", "data-testid": "events-status" });
  const listBox = h("div");
  const pager = h("div.form-actions");
  const detail = h("div", { "data-testid": "event-detail" }, emptyState("Select an event to see its payload."));
  const requestsBox = h("div");
  main.append(
    h("div.split",
      h("section.panel", { "aria-labelledby": "ev-h" }, h("h2#ev-h", live ? "Live events" : "Event history"), status, listBox, pager),
      h("section.panel", { "aria-labelledby": "det-h" }, h("h2#det-h", "Event"), detail)),
    h("section.panel", { "aria-labelledby": "req-h" },
      h("div.page-head", h("h2#req-h", "Request log"),
        h("button.secondary.small", { type: "button", "data-testid": "requests-refresh", on: { click: () => loadRequests() } }, "Refresh")),
      h("p.muted", "Every attempt to this flow's webhook, rejected ones too, newest first: the first place to look when events are not received."),
      requestsBox));

  const rows = []; // events shown, in display order
  const duplicates = new Map(); // offset -> duplicate deliveries dropped (from the request log)
  let selected = null;

  const tbody = h("tbody");
  const table = h("table", { "data-testid": "events-table" },
    h("thead", h("tr", ["Offset", "Type", "Received", "Flags"].map((t, i) => h(i === 0 ? "th.num" : "th", { scope: "col" }, t)))),
    tbody);

  function flags(ev) {
    const out = [];
    if (ev.test) out.push(h("span.badge.info", "test"));
    const d = duplicates.get(ev.offset);
    if (d) out.push(h("span.badge.warn", { title: `${d} duplicate deliveries were answered without storing` }, `duplicate ×${d}`));
    return out;
  }

  function row(ev) {
    const tr = h("tr.selectable", {
      tabindex: "0",
      "data-offset": ev.offset,
      "aria-current": selected === ev.offset ? "true" : null,
      on: {
        click: () => select(ev),
        keydown: (e) => {
          if (e.key === "Enter" || e.key === " ") {
            e.preventDefault();
            select(ev);
          } else if (e.key === "ArrowDown" && tr.nextElementSibling) {
            e.preventDefault();
            tr.nextElementSibling.focus();
          } else if (e.key === "ArrowUp" && tr.previousElementSibling) {
            e.preventDefault();
            tr.previousElementSibling.focus();
          }
        },
      },
    },
    h("td.num.mono", String(ev.offset)),
    h("td", h("code", ev.event)),
    h("td", fmtTime(ev.receivedAt)),
    h("td.flags", flags(ev)));
    tr.eventData = ev;
    return tr;
  }

  function select(ev) {
    selected = ev.offset;
    for (const tr of tbody.children) {
      if (tr.eventData && tr.eventData.offset === ev.offset) tr.setAttribute("aria-current", "true");
      else tr.removeAttribute("aria-current");
    }
    clear(detail).append(
      h("dl.kv",
        h("dt", "Offset"), h("dd.mono", String(ev.offset)),
        h("dt", "Event ID"), h("dd.mono", ev.eventId),
        h("dt", "Type"), h("dd", h("code", ev.event)),
        h("dt", "Received"), h("dd", `${fmtTime(ev.receivedAt)} (${ev.receivedAt})`),
        h("dt", "Idempotency key"), h("dd.mono", ev.idempotencyKey ?? "none"),
        h("dt", "Test"), h("dd", ev.test ? "yes (sent from the playground)" : "no"),
        h("dt", "Duplicates"), h("dd", String(duplicates.get(ev.offset) || 0))),
      h("h3", "Payload"),
      h("pre.payload", { tabindex: "0", role: "region", "aria-label": "Payload", "data-testid": "payload" }, pretty(ev.payload)));
  }

  function redrawFlags() {
    for (const tr of tbody.children) {
      if (!tr.eventData) continue;
      const cell = tr.querySelector("td.flags");
      clear(cell).append(...flags(tr.eventData));
    }
  }

  function showList() {
    clear(listBox);
    if (!rows.length) {
      listBox.append(emptyState(live
        ? "No events yet. Send one to the webhook URL or from the Playground; it appears here at once."
        : "No events match here."));
      return;
    }
    clear(tbody).append(...rows.map(row));
    listBox.append(h("div.table-wrap", table));
  }

  async function loadRequests() {
    try {
      const r = await get(`/flows/${encodeURIComponent(flow.id)}/requests?limit=100`);
      duplicates.clear();
      for (const q of r.requests) {
        if (q.duplicates > 0 && q.offset !== null && q.offset !== undefined) {
          duplicates.set(q.offset, (duplicates.get(q.offset) || 0) + q.duplicates);
        }
      }
      redrawFlags();
      clear(requestsBox);
      if (!r.requests.length) {
        requestsBox.append(emptyState("No requests yet."));
        return;
      }
      requestsBox.append(h("div.table-wrap", h("table", { "data-testid": "requests-table" },
        h("thead", h("tr", ["Time", "Status", "Reason", "Latency", "Events", "Offset"].map((t, i) => h(i >= 3 ? "th.num" : "th", { scope: "col" }, t)))),
        h("tbody", r.requests.map((q) => h("tr", { "data-status": q.status },
          h("td", fmtTime(q.receivedAt)),
          h("td", statusBadge(q.status), q.test ? [" ", h("span.badge.info", "test")] : null,
            q.count > 1 ? [" ", h("span.badge", { title: "unauthenticated attempts in this second, counted as one row" }, `×${q.count}`)] : null),
          h("td", q.error ? [h("code", q.error), " ", q.message || ""] : q.duplicates ? "duplicate: answered with the first event" : "stored"),
          h("td.num", fmtMs(q.latencyMs)),
          h("td.num", q.events > 1 ? `${q.stored}/${q.events}` : String(q.events)),
          h("td.num.mono", q.offset ?? "")))))));
    } catch (e) {
      clear(requestsBox).append(errorBox(e));
    }
  }

  const base = `/flows/${encodeURIComponent(flow.id)}/events`;
  const typeQ = type ? `&type=${encodeURIComponent(type)}` : "";
  let stopStream = null;
  let timer = null;

  if (live) {
    const head = await get(`${base}?limit=1`);
    const start = Math.max(0, head.endOffset - PAGE);
    status.textContent = "Connecting…";
    showList();
    let pendingRefresh = null;
    stopStream = follow(flow.id, start, (ev) => {
      if (type && ev.event !== type) return;
      rows.unshift(ev);
      if (rows.length > LIVE_ROWS_MAX) rows.length = LIVE_ROWS_MAX;
      if (rows.length === 1) {
        showList();
      } else {
        tbody.prepend(row(ev));
        while (tbody.children.length > LIVE_ROWS_MAX) tbody.lastElementChild.remove();
      }
      status.textContent = `Live · ${rows.length} shown · newest offset ${ev.offset}`;
      if (!pendingRefresh) pendingRefresh = setTimeout(() => { pendingRefresh = null; loadRequests(); }, 300);
    }, (state, detailText, httpStatus) => {
      liveDot.classList.toggle("on", state === "live");
      if (state === "live") status.textContent = rows.length ? `Live · ${rows.length} shown` : "Live · waiting for events";
      else if (state === "error" && httpStatus === 401) ctx.onSignedOut();
      else if (state === "error") clear(listBox).append(errorBox(detailText));
      else if (state === "reconnecting") status.textContent = detailText;
    });
    timer = setInterval(loadRequests, REQUESTS_REFRESH_MS);
    pager.append(h("span.muted", `Showing the newest ${PAGE} events, then new ones as they arrive.`),
      h("button.secondary.small", { type: "button", on: { click: () => go({ from: Math.max(0, head.endOffset - PAGE) }) } }, "Browse history"));
  } else {
    const q = from !== null ? `from=${encodeURIComponent(from)}` : `since=${encodeURIComponent(since)}`;
    try {
      const page = await get(`${base}?${q}&limit=${PAGE}${typeQ}`);
      rows.push(...page.events);
      showList();
      const first = page.events.length ? page.events[0].offset : Number(from ?? page.nextOffset);
      status.textContent = page.events.length
        ? `Offsets ${page.events[0].offset}–${page.events[page.events.length - 1].offset} of ${page.endOffset} so far`
        : `Nothing here; the log ends at offset ${page.endOffset}.`;
      pager.append(
        h("button.secondary.small", { type: "button", disabled: first <= 0, on: { click: async () => go({ from: await olderStart(first) }) } }, "Older"),
        h("button.secondary.small", { type: "button", disabled: page.nextOffset >= page.endOffset, on: { click: () => go({ from: page.nextOffset }) } }, "Newer"));
    } catch (e) {
      listBox.append(errorBox(e));
    }
  }
  await loadRequests();

  /**
   * Where the page before `first` starts. Without a type filter: PAGE offsets back. With
   * one: step back through the log until PAGE matching events lie before `first` (or
   * the start is reached), so Older never shows the same events again.
   */
  async function olderStart(first) {
    if (!type) return Math.max(0, first - PAGE);
    const STEP = 1000;
    const found = [];
    let end = first;
    for (let round = 0; round < 20 && end > 0 && found.length < PAGE; round += 1) {
      const start = Math.max(0, end - STEP);
      let next = start;
      while (next < end) {
        const page = await get(`${base}?from=${next}&limit=1000${typeQ}`);
        for (const ev of page.events) if (ev.offset < end) found.push(ev.offset);
        if (!page.events.length || page.nextOffset <= next) break;
        next = page.nextOffset;
      }
      end = start;
    }
    found.sort((a, b) => a - b);
    return found.length ? found[Math.max(0, found.length - PAGE)] : 0;
  }

  return () => {
    if (stopStream) stopStream();
    if (timer) clearInterval(timer);
  };
}

function toLocalInput(d) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
