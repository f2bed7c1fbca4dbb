// The dashboard shell: sign-in, navigation and the hash router. Each page is a module
// with `render(ctx)`; a page may return a function that stops its timers and streams.

import { ApiError, forgetKey, get, storeKey, storedKey } from "./api.js";
import { clear, errorBox, field, h } from "./ui.js";
import * as flows from "./page-flows.js";
import * as events from "./page-events.js";
import * as analytics from "./page-analytics.js";
import * as playground from "./page-playground.js";
import * as consumers from "./page-consumers.js";
import * as keys from "./page-keys.js";

const PAGES = [
  { path: "flows", title: "Flows", page: flows },
  { path: "events", title: "Events", page: events },
  { path: "analytics", title: "Analytics", page: analytics },
  { path: "playground", title: "Playground", page: playground },
  { path: "consumers", title: "Consumers", page: consumers },
  { path: "keys", title: "Keys", page: keys },
];

const session = { role: null, flows: [] };
let stopPage = null;

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query] = hash.split("?");
  const entry = PAGES.find((p) => p.path === path) || PAGES[0];
  return { entry, params: new URLSearchParams(query || "") };
}

/** Changes the page (or the page's parameters) through the hash, so Back works. */
export function navigate(path, params) {
  const q = params ? new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "")).toString() : "";
  location.hash = `#/${path}${q ? `?${q}` : ""}`;
}

/** Who the key belongs to: admin (everything) or a workspace key (reads only). */
async function whoAmI() {
  const list = await get("/flows");
  try {
    await get("/keys");
    return { role: "admin", flows: list.flows };
  } catch (e) {
    if (e instanceof ApiError && e.status === 403) return { role: "read", flows: list.flows };
    throw e;
  }
}

async function refreshFlows() {
  session.flows = (await get("/flows")).flows;
  return session.flows;
}

function signIn(problem) {
  document.title = "Sign in · EventMesh";
  const app = clear(document.getElementById("app"));
  const input = h("input", { type: "password", name: "key", autocomplete: "off", required: true, spellcheck: "false" });
  const status = h("div", { "aria-live": "assertive" }, problem ? errorBox(problem) : null);
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h("form", {
    on: {
      submit: async (e) => {
        e.preventDefault();
        button.disabled = true;
        clear(status);
        storeKey(input.value.trim());
        try {
          Object.assign(session, await whoAmI());
          start();
        } catch (err) {
          forgetKey();
          const msg = err instanceof ApiError && err.status === 401
            ? new ApiError(401, "invalid_api_key", "That key was not accepted. Use the admin key or a workspace key with scope read.")
            : err;
          status.append(errorBox(msg));
          button.disabled = false;
          input.focus();
        }
      },
    },
  },
  field("Admin key or workspace key (scope read)", input,
    "Kept in this tab's session storage only; closing the tab signs you out."),
  status,
  button);
  app.append(h("main.signin#main", h("div.panel", h("h1", "EventMesh"), h("p.muted", "Sign in to see flows, events and analytics."), form)));
  input.focus();
}

function layout() {
  const app = clear(document.getElementById("app"));
  const nav = h("nav.nav", { "aria-label": "Main" },
    h("div.brand", "EventMesh"),
    PAGES.map((p) => h("a", { href: `#/${p.path}`, "data-page": p.path }, p.title)),
    h("div.who",
      h("span", session.role === "admin" ? "Signed in: admin" : "Signed in: read key"),
      h("button.secondary.small", {
        type: "button",
        on: { click: () => signOut() },
      }, "Sign out")));
  const main = h("main#main", { tabindex: "-1" });
  app.append(h("div.shell", nav, main));
  return { nav, main };
}

let shell = null;
let generation = 0;

function stopCurrentPage() {
  if (stopPage) {
    stopPage();
    stopPage = null;
  }
}

/** Forgets the key, stops the page's streams and timers, and shows the sign-in form. */
function signOut(problem) {
  window.onhashchange = null;
  generation += 1;
  stopCurrentPage();
  forgetKey();
  history.replaceState(null, "", location.pathname);
  signIn(problem);
}

/** Draws the page the hash names. `moveFocus` after a navigation, not on first load. */
async function show(moveFocus) {
  stopCurrentPage();
  const gen = ++generation;
  const { entry, params } = route();
  for (const a of shell.nav.querySelectorAll("a[data-page]")) {
    if (a.dataset.page === entry.path) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${entry.title} · EventMesh`;
  // A fresh <main> per page: a slow page that finishes after the user moved on writes
  // into a detached element, never into the next page.
  const main = h("main#main", { tabindex: "-1", "data-page": entry.path });
  shell.main.replaceWith(main);
  shell.main = main;
  const ctx = {
    main,
    params,
    role: session.role,
    flows: session.flows,
    refreshFlows,
    navigate,
    onSignedOut: () => signOut(new ApiError(401, "invalid_api_key", "The key stopped working; sign in again.")),
  };
  try {
    const stop = await entry.page.render(ctx);
    if (gen !== generation) {
      if (typeof stop === "function") stop();
      return;
    }
    if (typeof stop === "function") stopPage = stop;
    if (moveFocus) {
      const heading = main.querySelector("h1");
      if (heading) {
        heading.tabIndex = -1;
        heading.focus();
      }
    }
  } catch (e) {
    if (gen !== generation) return;
    if (e instanceof ApiError && e.status === 401) {
      ctx.onSignedOut();
      return;
    }
    main.append(h("h1", entry.title), errorBox(e));
  }
}

function start() {
  shell = layout();
  window.onhashchange = () => show(true);
  show(false);
}

// The skip link jumps to the page's content; as a plain "#main" link it would go
// through the hash router instead.
document.addEventListener("click", (e) => {
  const skip = e.target.closest && e.target.closest("a.skip");
  if (!skip) return;
  e.preventDefault();
  const main = document.getElementById("main");
  if (main) main.focus();
});

async function boot() {
  if (!storedKey()) {
    signIn();
    return;
  }
  try {
    Object.assign(session, await whoAmI());
    start();
  } catch (e) {
    forgetKey();
    signIn(e instanceof ApiError && e.status === 401 ? null : e);
  }
}

boot();
