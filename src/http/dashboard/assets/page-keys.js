// API keys: create, rotate and revoke. A key's plaintext is shown once, when it is made.

import { del, get, post } from "./api.js";
import { clear, confirmDialog, copyButton, emptyState, errorBox, field, fmtTime, h, toast, whileBusy } from "./ui.js";

export async function render(ctx) {
  const { main } = ctx;
  main.append(h("div.page-head", h("h1", "API keys")));
  if (ctx.role !== "admin") {
    main.append(h("div.panel", emptyState("Managing keys needs the admin key. Sign out and sign in with it.")));
    return null;
  }
  const notice = h("div", { "aria-live": "polite" });
  const listBox = h("div");
  const workspaces = (await get("/workspaces")).workspaces || [];
  main.append(notice, createForm(workspaces, notice, reload),
    h("section.panel", { "aria-labelledby": "keys-h" }, h("h2#keys-h", "All keys"), listBox));

  async function reload() {
    const list = (await get("/keys")).keys;
    clear(listBox);
    if (!list.length) {
      listBox.append(emptyState("No API keys yet. Senders need a key with scope ingest, unless their flow verifies signatures."));
      return;
    }
    const wsName = (id) => (workspaces.find((w) => w.id === id) || {}).name || id;
    listBox.append(h("div.table-wrap", h("table", { "data-testid": "keys-table" },
      h("thead", h("tr", ["Name", "Workspace", "Scopes", "Env", "Expires", "Status", ""].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", list.map((k) => h("tr", { "data-key-id": k.id },
        h("td", h("strong", k.name), h("div.muted.mono", k.id)),
        h("td", wsName(k.workspaceId)),
        h("td", (k.scopes || []).join(", ")),
        h("td", k.env),
        h("td", k.expiresAt ? fmtTime(k.expiresAt) : "never"),
        h("td", k.revoked ? h("span.badge.bad", "revoked") : h("span.badge.ok", "active")),
        h("td", k.revoked ? null : h("div.form-actions", { style: "margin-top:0" },
          h("button.secondary.small", { type: "button", "aria-label": `Rotate key ${k.name}`, on: { click: () => rotate(k) } }, "Rotate"),
          h("button.danger.small", { type: "button", "aria-label": `Revoke key ${k.name}`, on: { click: () => revoke(k) } }, "Revoke")))))))));
  }

  async function rotate(k) {
    const ok = await confirmDialog(`Rotate ${k.name}?`, "A new key is made now. The old one keeps working for one hour, so senders can switch.", "Rotate key");
    if (!ok) return;
    try {
      const r = await post(`/keys/${encodeURIComponent(k.id)}/rotate`, { graceSeconds: 3600 });
      clear(notice).append(shownOnce(`New key for ${k.name}`, r.key));
      await reload();
    } catch (e) {
      toast(e.message, true);
    }
  }

  async function revoke(k) {
    const ok = await confirmDialog(`Revoke ${k.name}?`, "The key stops working at once. This cannot be undone.", "Revoke key");
    if (!ok) return;
    try {
      await del(`/keys/${encodeURIComponent(k.id)}`);
      toast(`Revoked ${k.name}`);
      await reload();
    } catch (e) {
      toast(e.message, true);
    }
  }

  await reload();
  return null;
}

function shownOnce(title, key) {
  return h("div.secret-box", { role: "status", "data-testid": "key-created" },
    h("strong", title),
    h("div", "Copy it now: it is shown this once and stored only as a hash."),
    h("code", { "data-testid": "new-key" }, key),
    copyButton(key, "Copy the new key"));
}

function createForm(workspaces, notice, reload) {
  const name = h("input", { name: "name", required: true, maxlength: 200, placeholder: "github-sender" });
  const workspace = h("select", { name: "workspaceId" }, workspaces.map((w) => h("option", { value: w.id }, `${w.name} (${w.id})`)));
  const ingest = h("input", { type: "checkbox", name: "ingest", checked: true });
  const read = h("input", { type: "checkbox", name: "read" });
  const env = h("select", { name: "env" }, h("option", { value: "live" }, "live"), h("option", { value: "test" }, "test"));
  const expires = h("input", { type: "datetime-local", name: "expiresAt", step: 1 });
  const errors = h("div", { "aria-live": "assertive" });
  const submit = h("button", { type: "submit" }, "Create key");
  const form = h("form", {
    on: {
      submit: async (e) => {
        e.preventDefault();
        clear(errors);
        const scopes = [ingest.checked ? "ingest" : null, read.checked ? "read" : null].filter(Boolean);
        if (!scopes.length) {
          errors.append(errorBox("Pick at least one scope."));
          return;
        }
        const body = { name: name.value.trim(), scopes, env: env.value };
        if (workspace.value) body.workspaceId = workspace.value;
        if (expires.value) body.expiresAt = new Date(expires.value).toISOString();
        await whileBusy(submit, errors, async () => {
          const k = await post("/keys", body);
          form.reset();
          clear(notice).append(shownOnce(`Key ${body.name} created`, k.key));
          await reload();
        });
      },
    },
  },
  h("div.form-grid",
    field("Name", name),
    field("Workspace", workspace),
    field("Environment", env),
    field("Expires (optional)", expires)),
  h("fieldset", { style: "margin-top:12px" }, h("legend", "Scopes"),
    h("div.toolbar", h("label.inline", ingest, "ingest (send to webhooks)"), h("label.inline", read, "read (events, consumers, analytics)"))),
  errors,
  h("div.form-actions", submit));
  return h("section.panel", { "aria-labelledby": "newkey-h" }, h("h2#newkey-h", "Create a key"), form);
}
