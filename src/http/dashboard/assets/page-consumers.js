// Consumers: committed offset and lag per consumer of a flow, and a seek control.

import { get, post } from "./api.js";
import { clear, emptyState, errorBox, field, flowPage, flowSelect, fmtNum, fmtTime, h, toast } from "./ui.js";

export async function render(ctx) {
  const { main } = ctx;
  const page = await flowPage(ctx, "Consumers", "No flows yet. Consumers read a flow's events; create a flow first.");
  if (!page) return null;
  const { flows, flow } = page;
  const listBox = h("div", { "aria-live": "polite" });
  main.append(
    h("div.panel", h("div.toolbar",
      field("Flow", flowSelect(flows, flow.id, (id) => ctx.navigate("consumers", { flow: id }))),
      h("button.secondary", { type: "button", on: { click: () => load() } }, "Refresh"))),
    h("section.panel", { "aria-labelledby": "cons-h" }, h("h2#cons-h", `Consumers of ${flow.name}`),
      h("p.muted", "The committed offset is the next offset the consumer reads. Lag is how many retained events lie past it."),
      listBox));

  async function load() {
    try {
      const list = await get(`/flows/${encodeURIComponent(flow.id)}/consumers`);
      clear(listBox);
      if (!list.length) {
        listBox.append(emptyState("No consumers yet. A consumer appears when it first polls: POST /api/flows/{flowId}/consumers/{name}/poll."));
        return;
      }
      listBox.append(h("div.table-wrap", h("table", { "data-testid": "consumers-table" },
        h("thead", h("tr", ["Name", "Committed offset", "Lag", "Updated", "Seek"].map((t, i) => h(i === 1 || i === 2 ? "th.num" : "th", { scope: "col" }, t)))),
        h("tbody", list.map((c) => h("tr", { "data-consumer": c.name },
          h("td", h("strong", c.name)),
          h("td.num.mono", { "data-testid": "committed" }, String(c.committedOffset)),
          h("td.num", { "data-testid": "lag" }, fmtNum(c.lag)),
          h("td", fmtTime(c.updatedAt)),
          h("td", seekControl(flow, c, load))))))));
    } catch (e) {
      clear(listBox).append(errorBox(e));
    }
  }
  await load();
  return null;
}

function seekControl(flow, consumer, reload) {
  const to = h("select", { "aria-label": `Seek ${consumer.name} to` },
    h("option", { value: "earliest" }, "earliest"),
    h("option", { value: "latest" }, "latest"),
    h("option", { value: "offset" }, "offset…"),
    h("option", { value: "timestamp" }, "time…"));
  const offset = h("input", { type: "number", min: 0, step: 1, "aria-label": `Offset for ${consumer.name}`, hidden: true });
  const time = h("input", { type: "datetime-local", step: 1, "aria-label": `Time for ${consumer.name}`, hidden: true });
  to.addEventListener("change", () => {
    offset.hidden = to.value !== "offset";
    time.hidden = to.value !== "timestamp";
  });
  return h("form.toolbar", {
    on: {
      submit: async (e) => {
        e.preventDefault();
        let body;
        if (to.value === "offset") {
          if (offset.value === "") return offset.focus();
          body = { offset: Number(offset.value) };
        } else if (to.value === "timestamp") {
          const d = new Date(time.value);
          if (Number.isNaN(d.getTime())) return time.focus();
          body = { timestamp: d.toISOString() };
        } else {
          body = { to: to.value };
        }
        try {
          await post(`/flows/${encodeURIComponent(flow.id)}/consumers/${encodeURIComponent(consumer.name)}/seek`, body);
          toast(`${consumer.name} moved`);
          await reload();
        } catch (err) {
          toast(err.message, true);
        }
      },
    },
  }, to, offset, time, h("button.secondary.small", { type: "submit" }, "Seek"));
}
