// Flows: list, create (scheme, secret, rate limit, dedup window, retention), copy the
// webhook URL, delete.

import { del, get, post } from "./api.js";
import { clear, confirmDialog, copyButton, emptyState, field, fmtBytes, fmtSeconds, h, toast, whileBusy } from "./ui.js";

const SCHEMES = ["none", "eventmesh", "github", "stripe", "standard", "shopify", "slack"];

export async function render(ctx) {
  const { main } = ctx;
  const isAdmin = ctx.role === "admin";
  const notice = h("div", { "aria-live": "polite" });
  const listBox = h("div");
  main.append(
    h("div.page-head", h("h1", "Flows")),
    notice,
    isAdmin ? createForm(ctx, notice, reload) : h("p.muted", "Creating and deleting flows needs the admin key."),
    h("section.panel", { "aria-labelledby": "flows-h" }, h("h2#flows-h", "All flows"), listBox),
  );

  async function reload() {
    const flows = await ctx.refreshFlows();
    clear(listBox);
    if (!flows.length) {
      listBox.append(emptyState(isAdmin ? "No flows yet. Create one above to get a webhook URL." : "This workspace has no flows yet."));
      return;
    }
    listBox.append(h("div.table-wrap", h("table", { "data-testid": "flows-table" },
      h("thead", h("tr",
        ["Name", "Webhook URL", "Signature", "Rate limit", "Dedup window", "Retention", ""].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", flows.map((f) => flowRow(ctx, f, isAdmin, reload))))));
  }
  await reload();
}

function flowRow(ctx, f, isAdmin, reload) {
  const rl = f.rateLimit ? `${f.rateLimit.perSecond}/s, burst ${f.rateLimit.burst}` : "off";
  const ret = f.retention || {};
  const retention = [ret.maxAgeSeconds ? fmtSeconds(ret.maxAgeSeconds) : null, ret.maxBytes ? fmtBytes(ret.maxBytes) : null]
    .filter(Boolean).join(", ") || "keep all";
  const unavailable = f.status === "unavailable";
  return h("tr", { "data-flow-id": f.id, "data-status": f.status || "ok" },
    h("td", h("strong", f.name), " ",
      unavailable ? h("span.badge.bad", { "data-testid": "flow-unavailable", title: f.unavailableReason || "" }, "unavailable") : null,
      h("div.muted.mono", f.id),
      unavailable ? h("div.muted", { style: "max-width:28rem" },
        "Its logs could not be opened, so its webhook and reads answer 503 until it is repaired: ",
        h("span.mono", f.unavailableReason || ""),
        ". Run eventmesh check on the data directory; for a damaged log, stop the server, run eventmesh repair on the named directory, and restart.") : null),
    h("td", h("div.url", h("code", { title: f.webhookUrl, "data-testid": "webhook-url" }, f.webhookUrl), copyButton(f.webhookUrl, `Copy the webhook URL of ${f.name}`))),
    h("td", f.signature.scheme),
    h("td", rl),
    h("td", fmtSeconds(f.dedupWindowSeconds)),
    h("td", retention),
    h("td", h("div.form-actions", { style: "margin-top:0" },
      h("a.button.secondary.small", { href: `#/events?flow=${encodeURIComponent(f.id)}` }, "Events"),
      isAdmin ? h("button.danger.small", {
        type: "button",
        "aria-label": `Delete flow ${f.name}`,
        on: {
          click: async () => {
            const ok = await confirmDialog(`Delete ${f.name}?`,
              "Its webhook answers 404 from now on, and its events are deleted. This cannot be undone.", "Delete flow");
            if (!ok) return;
            try {
              await del(`/flows/${encodeURIComponent(f.id)}`);
              toast(`Deleted ${f.name}`);
              await reload();
            } catch (e) {
              toast(e.message, true);
            }
          },
        },
      }, "Delete") : null)));
}

function numberInput(name, value, min) {
  return h("input", { type: "number", name, min: min ?? 0, step: 1, value: value ?? "" });
}

function createForm(ctx, notice, reload) {
  const name = h("input", { name: "name", required: true, maxlength: 200, placeholder: "orders" });
  const workspace = h("select", { name: "workspaceId" }, h("option", { value: "" }, "default"));
  get("/workspaces").then((r) => {
    clear(workspace);
    for (const w of r.workspaces || []) workspace.append(h("option", { value: w.id }, `${w.name} (${w.id})`));
  }).catch(() => {});
  const scheme = h("select", { name: "scheme" }, SCHEMES.map((s) => h("option", { value: s }, s)));
  const secret = h("input", { name: "secret", placeholder: "generated when empty", autocomplete: "off" });
  const limited = h("input", { type: "checkbox", name: "rateLimited", checked: true });
  const perSecond = numberInput("perSecond", 100, 1);
  const burst = numberInput("burst", 100, 1);
  limited.addEventListener("change", () => { perSecond.disabled = burst.disabled = !limited.checked; });
  const dedup = numberInput("dedupWindowSeconds", 86400, 1);
  const maxAge = numberInput("maxAgeSeconds", "", 1);
  const maxBytes = numberInput("maxBytes", "", 1);
  const errors = h("div", { "aria-live": "assertive" });
  const submit = h("button", { type: "submit" }, "Create flow");

  const form = h("form", {
    on: {
      submit: async (e) => {
        e.preventDefault();
        clear(errors);
        const body = { name: name.value.trim() };
        if (workspace.value) body.workspaceId = workspace.value;
        body.signature = { scheme: scheme.value };
        if (secret.value.trim()) body.signature.secret = secret.value.trim();
        body.rateLimit = limited.checked ? { perSecond: Number(perSecond.value), burst: Number(burst.value) } : null;
        if (dedup.value !== "") body.dedupWindowSeconds = Number(dedup.value);
        const retention = {};
        if (maxAge.value) retention.maxAgeSeconds = Number(maxAge.value);
        if (maxBytes.value) retention.maxBytes = Number(maxBytes.value);
        if (Object.keys(retention).length) body.retention = retention;
        await whileBusy(submit, errors, async () => {
          const flow = await post("/flows", body);
          form.reset();
          perSecond.disabled = burst.disabled = false;
          clear(notice).append(created(flow));
          await reload();
        });
      },
    },
  },
  h("div.form-grid",
    field("Name", name),
    field("Workspace", workspace),
    field("Signature scheme", scheme),
    field("Signing secret", secret, "shown once, never again"),
    field("Dedup window (seconds)", dedup)),
  h("fieldset", { style: "margin-top:12px" }, h("legend", "Rate limit"),
    h("div.form-grid",
      h("label.inline", limited, "Limit events per second"),
      field("Per second", perSecond),
      field("Burst", burst))),
  h("fieldset", { style: "margin-top:12px" }, h("legend", "Retention (empty keeps everything)"),
    h("div.form-grid", field("Max age (seconds)", maxAge), field("Max bytes", maxBytes))),
  errors,
  h("div.form-actions", submit));
  return h("section.panel", { "aria-labelledby": "create-h" }, h("h2#create-h", "Create a flow"), form);
}

function created(flow) {
  const secret = flow.signature && flow.signature.secret;
  return h("div.secret-box", { role: "status", "data-testid": "flow-created" },
    h("strong", `Flow ${flow.name} created.`),
    h("div", "Webhook URL:"),
    h("code", { "data-testid": "created-webhook-url" }, flow.webhookUrl),
    copyButton(flow.webhookUrl, "Copy the webhook URL"),
    secret ? [h("div", { style: "margin-top:8px" }, "Signing secret, shown this once:"), h("code", { "data-testid": "created-secret" }, secret), copyButton(secret, "Copy the signing secret")] : null);
}
