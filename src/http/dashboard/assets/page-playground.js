// Playground: send a JSON payload with headers through POST /api/playground/test and see
// the status, the response and the latency. The server signs for flows with a scheme.

import { post } from "./api.js";
import { clear, emptyState, errorBox, field, flowPage, flowSelect, fmtMs, h, pretty, statusBadge } from "./ui.js";

const SAMPLE = {
  event: "order.created",
  data: { id: "ord_1001", amount: 4200, currency: "EUR" },
};

export async function render(ctx) {
  const { main } = ctx;
  const page = await flowPage(ctx, "Playground", "No flows yet. Create a flow first, then try a webhook here.");
  if (!page) return null;
  const { flows } = page;
  let { flow } = page;
  const select = flowSelect(flows, flow.id, (id) => {
    flow = flows.find((f) => f.id === id) || flow;
    urlText.textContent = flow.webhookUrl;
    schemeText.textContent = flow.signature.scheme;
  });
  const urlText = h("code", flow.webhookUrl);
  const schemeText = h("span", flow.signature.scheme);
  const payload = h("textarea", { name: "payload", rows: 14, spellcheck: "false" }, pretty(SAMPLE));
  const headers = h("textarea", { name: "headers", rows: 5, spellcheck: "false", placeholder: "Idempotency-Key: order-1001" });
  const problems = h("div", { "aria-live": "assertive" });
  const result = h("div", { "data-testid": "playground-result", "aria-live": "polite" }, emptyState("Send a payload to see the answer here."));
  const send = h("button", { type: "submit" }, "Send test event");

  const form = h("form", {
    on: {
      submit: async (e) => {
        e.preventDefault();
        clear(problems);
        let body;
        try {
          body = JSON.parse(payload.value);
        } catch (err) {
          problems.append(errorBox(`The payload is not valid JSON: ${err.message}`));
          payload.focus();
          return;
        }
        const hdrs = {};
        for (const [i, line] of headers.value.split("\n").entries()) {
          if (!line.trim()) continue;
          const colon = line.indexOf(":");
          if (colon <= 0) {
            problems.append(errorBox(`Header line ${i + 1} needs the form "Name: value".`));
            headers.focus();
            return;
          }
          hdrs[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
        }
        send.disabled = true;
        const started = performance.now();
        try {
          const r = await post("/playground/test", { webhookUrl: flow.webhookUrl, payload: body, headers: hdrs });
          const roundTrip = performance.now() - started;
          clear(result).append(
            h("dl.kv",
              h("dt", "Status"), h("dd", { "data-testid": "playground-status" }, statusBadge(r.statusCode)),
              h("dt", "Server latency"), h("dd", { "data-testid": "playground-latency" }, fmtMs(r.latencyMs)),
              h("dt", "Round trip"), h("dd", fmtMs(roundTrip))),
            h("h3", "Response"),
            h("pre.payload", { tabindex: "0", "data-testid": "playground-response" }, pretty(r.response)),
            r.response && typeof r.response.offset === "number"
              ? h("p", h("a", { href: `#/events?flow=${encodeURIComponent(flow.id)}` }, `See it in Events (offset ${r.response.offset})`))
              : null);
        } catch (err) {
          clear(result).append(errorBox(err));
        } finally {
          send.disabled = false;
        }
      },
    },
  },
  h("div.form-grid", field("Flow", select)),
  h("dl.kv", { style: "margin-top:12px" }, h("dt", "Webhook URL"), h("dd", urlText), h("dt", "Signature scheme"), h("dd", schemeText)),
  field("JSON payload", payload),
  h("div", { style: "height:10px" }),
  field("Headers, one per line", headers, "Signed flows are signed for you with the flow's current secret unless you give signature headers."),
  problems,
  h("div.form-actions", send));

  main.append(h("div.grid2",
    h("section.panel", { "aria-labelledby": "pg-h" }, h("h2#pg-h", "Request"), form),
    h("section.panel", { "aria-labelledby": "res-h" }, h("h2#res-h", "Answer"), result)));
  return null;
}
