// Small DOM helpers shared by the pages. Text always goes in as text, never as HTML.

/** h("tag.class#id", {attrs, on: {click}}, ...children) */
export function h(spec, attrs, ...children) {
  const [tagAndClasses, id] = spec.split("#");
  const [tag, ...classes] = tagAndClasses.split(".");
  const el = document.createElement(tag || "div");
  if (id) el.id = id;
  if (classes.length) el.className = classes.join(" ");
  if (attrs !== undefined && attrs !== null
    && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    // Not attributes but the first child (text, a number such as 0, a node or a list).
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "on") {
      for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    } else if (k === "text") {
      el.textContent = v;
    } else if (k === "value") {
      // The default too, so a form reset returns to it.
      if ("defaultValue" in el) el.defaultValue = v;
      el.value = v;
    } else if (k === "style") {
      // Through the CSSOM: the page's Content-Security-Policy refuses style attributes.
      el.style.cssText = v;
    } else if (k === "checked") {
      el.defaultChecked = !!v;
      el.checked = !!v;
    } else {
      el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

let fieldSeq = 0;
/** A labelled control: the label wraps the text and the control. */
export function field(labelText, control, hint) {
  if (!control.id) control.id = `f${++fieldSeq}`;
  return h("label", { for: control.id }, labelText, control, hint ? h("span.muted", hint) : null);
}

export function toast(message, bad) {
  const box = document.getElementById("toasts");
  const t = h(bad ? "div.toast.bad" : "div.toast", message);
  box.append(t);
  setTimeout(() => t.remove(), bad ? 7000 : 3500);
}

export function errorBox(e) {
  const code = e && e.code ? ` (${e.status} ${e.code})` : "";
  return h("div.error-box", { role: "alert" }, `${(e && e.message) || e}${code}`);
}

/** Runs `work` with `button` disabled; a failure lands in `errors` as an alert. */
export async function whileBusy(button, errors, work) {
  button.disabled = true;
  try {
    await work();
  } catch (err) {
    errors.append(errorBox(err));
  } finally {
    button.disabled = false;
  }
}

export function emptyState(text) {
  return h("p.empty", text);
}

/** Asks a yes/no question in a modal <dialog>; resolves true when confirmed. */
export function confirmDialog(title, body, confirmLabel) {
  return new Promise((resolve) => {
    const dlg = h("dialog", { "aria-labelledby": "dlg-title" });
    const done = (ok) => {
      dlg.close();
      dlg.remove();
      resolve(ok);
    };
    dlg.append(
      h("h2#dlg-title", title),
      h("p", body),
      h("div.form-actions",
        h("button.danger", { type: "button", on: { click: () => done(true) } }, confirmLabel || "Confirm"),
        h("button.secondary", { type: "button", autofocus: true, on: { click: () => done(false) } }, "Cancel")),
    );
    dlg.addEventListener("cancel", (e) => {
      e.preventDefault();
      done(false);
    });
    document.body.append(dlg);
    dlg.showModal();
  });
}

export async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
    toast("Copied to the clipboard");
  } catch (e) {
    // Clipboard access needs a secure context; fall back to a selection the user copies.
    const ta = h("textarea", { "aria-label": "Text to copy", readonly: true }, text);
    document.body.append(ta);
    ta.select();
    const ok = document.execCommand && document.execCommand("copy");
    ta.remove();
    toast(ok ? "Copied to the clipboard" : "Select the text and copy it by hand", !ok);
  }
}

export function copyButton(text, label) {
  return h("button.secondary.small", { type: "button", "aria-label": label || "Copy", on: { click: () => copy(text) } }, "Copy");
}

export function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function fmtNum(n) {
  if (n === null || n === undefined) return "–";
  return Number(n).toLocaleString("en-US");
}

export function fmtPct(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  return `${(x * 100).toFixed(1)}%`;
}

export function fmtMs(x) {
  if (x === null || x === undefined) return "–";
  if (x > 0 && x < 0.01) return "< 0.01 ms";
  return `${Number(x).toFixed(x < 10 ? 2 : 1)} ms`;
}

export function fmtBytes(n) {
  if (!n) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(v < 10 && i ? 1 : 0)} ${units[i]}`;
}

export function fmtSeconds(s) {
  if (s === null || s === undefined) return "";
  if (s % 86400 === 0) return `${s / 86400} d`;
  if (s % 3600 === 0) return `${s / 3600} h`;
  if (s % 60 === 0) return `${s / 60} min`;
  return `${s} s`;
}

export function statusBadge(status) {
  const cls = status >= 200 && status < 300 ? "ok" : status === 429 || status === 503 ? "warn" : "bad";
  return h(`span.badge.${cls}`, String(status));
}

/**
 * The start of a page about one flow: its heading, then either an empty state (no flows
 * yet: returns null) or `{ flows, flow }`, the flow the URL names or else the first.
 */
export async function flowPage(ctx, title, emptyText) {
  const flows = await ctx.refreshFlows();
  ctx.main.append(h("div.page-head", h("h1", title)));
  if (!flows.length) {
    ctx.main.append(h("div.panel", emptyState(emptyText)));
    return null;
  }
  return { flows, flow: flows.find((f) => f.id === ctx.params.get("flow")) || flows[0] };
}

/** A <select> of flows; `selected` is a flow id. */
export function flowSelect(flows, selected, onChange) {
  const sel = h("select", { on: { change: () => onChange(sel.value) } },
    flows.map((f) => h("option", { value: f.id, selected: f.id === selected }, `${f.name} (${f.id})`)));
  return sel;
}

export function pretty(json) {
  try {
    return JSON.stringify(json, null, 2);
  } catch (e) {
    return String(json);
  }
}
