// The HTTP API, same origin only. The key lives in sessionStorage and nowhere else.

const KEY_SLOT = "eventmesh.key";

export function storedKey() {
  return sessionStorage.getItem(KEY_SLOT);
}

export function storeKey(key) {
  sessionStorage.setItem(KEY_SLOT, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_SLOT);
}

/** An API error: the HTTP status and the contract's `{error, message}` body. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

function headers(extra) {
  const h = { Authorization: `Bearer ${storedKey() || ""}` };
  return Object.assign(h, extra || {});
}

/** Calls `/api/...`; resolves to the parsed JSON (or null for 204), rejects with ApiError. */
export async function api(method, path, body) {
  const init = { method, headers: headers(), cache: "no-store" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let res;
  try {
    res = await fetch(`/api${path}`, init);
  } catch (e) {
    throw new ApiError(0, "network", "The server did not answer. Is it running?");
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch (e) {
    json = null;
  }
  if (!res.ok) {
    throw new ApiError(res.status, json && json.error, json && json.message);
  }
  return json;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body === undefined ? {} : body);
export const del = (path) => api("DELETE", path);

/**
 * Follows a flow's Server-Sent Events stream with fetch (EventSource cannot send the
 * Authorization header). Calls onEvent(event) per event and onState("live"|"closed"|
 * "error", detail). Resumes after the last offset seen when the connection drops.
 * Returns a function that stops it.
 */
export function follow(flowId, from, onEvent, onState) {
  const ctl = new AbortController();
  let next = from;
  let stopped = false;
  let retryMs = 500;

  async function once() {
    const q = next === null || next === undefined ? "" : `?from=${next}`;
    const res = await fetch(`/api/flows/${encodeURIComponent(flowId)}/stream${q}`, {
      headers: headers({ Accept: "text/event-stream" }),
      signal: ctl.signal,
      cache: "no-store",
    });
    if (!res.ok) {
      let msg = `HTTP ${res.status}`;
      try {
        const j = await res.json();
        msg = j.message || msg;
      } catch (e) { /* not JSON */ }
      throw new ApiError(res.status, "stream", msg);
    }
    onState("live");
    retryMs = 500;
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const frame = parseFrame(block);
        // Every event carries `id:` (its offset); the server's own notices (overflow,
        // read error) do not. `event:` is the sender's type and may be any word.
        if (frame.id === null || frame.data === null) continue;
        let event;
        try {
          event = JSON.parse(frame.data);
        } catch (e) {
          continue;
        }
        if (typeof event.offset === "number") next = event.offset + 1;
        onEvent(event);
      }
    }
  }

  (async () => {
    while (!stopped) {
      try {
        await once();
        if (stopped) break;
        onState("reconnecting", "The stream ended; reconnecting.");
      } catch (e) {
        if (stopped) break;
        if (e instanceof ApiError && e.status >= 400 && e.status < 500) {
          onState("error", e.message, e.status);
          return;
        }
        onState("reconnecting", "The stream dropped; reconnecting.");
      }
      await new Promise((r) => setTimeout(r, retryMs));
      retryMs = Math.min(retryMs * 2, 8000);
    }
    onState("closed");
  })();

  return () => {
    stopped = true;
    ctl.abort();
  };
}

function parseFrame(block) {
  const frame = { id: null, event: null, data: null };
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") frame.id = value;
    else if (field === "event") frame.event = value;
    else if (field === "data") frame.data = frame.data === null ? value : `${frame.data}\n${value}`;
  }
  return frame;
}
