#!/usr/bin/env python3
"""Many flows on one node under a small open-files limit (issue 16's bench).

    python3 examples/many_flows_start.py <eventmesh binary> [--flows 10000] [--limit 1024]
                                         [--send 200]

Every server runs under `ulimit -n <limit>`, `--fsync always`. The steps:
1. create that many flows on a fresh server (no rate limit);
2. stop it (SIGTERM: seconds until it exits), restart it: seconds until it listens
   (`/readyz` answers 200 then: only the flow files are read; each flow's logs open on
   first use, the rest in the background), then until it prints "every flow is open",
   and the CPU it uses idle over 5 s after that;
3. send one event each to `--send` of the flows, then `kill -9` the server;
4. restart it: seconds until it listens again;
5. read each of those flows back and check its event is there (flows still opening in
   the background open on demand); then until every flow is open, and a last SIGTERM.
After each step: the server's threads, open files and RSS. One JSON line. No proxy.
"""
import argparse, json, os, re, shutil, signal, subprocess, tempfile, time, urllib.request

ADMIN = "many-flows-admin-key-0123456789"
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def start(binary, data, limit=None):
    cmd = [binary, "serve", "--data-dir", data, "--listen", "127.0.0.1:0", "--admin-key", ADMIN]
    if limit:
        cmd = ["bash", "-c", f"ulimit -n {limit} && exec " + " ".join(f"'{c}'" for c in cmd)]
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    p.t0 = t0
    for line in p.stdout:
        m = re.search(r"listening on http://(\S+)", line)
        if m:
            return p, m.group(1), time.time() - t0
    raise SystemExit("the server exited before listening")


def all_open(p):
    """Seconds from start until the server printed "every flow is open"."""
    for line in p.stdout:
        if "every flow is open" in line:
            return round(time.time() - p.t0, 2)
    raise SystemExit("the server exited before every flow was open")


def cpu_seconds(p):
    fields = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def terminate(p):
    t0 = time.time()
    p.send_signal(signal.SIGTERM)
    p.wait()
    return round(time.time() - t0, 2)


def call(addr, method, path, body=None):
    headers = {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"}
    req = urllib.request.Request(f"http://{addr}{path}", data=body.encode() if body else None,
                                 method=method, headers=headers)
    try:
        r = opener.open(req)
        return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def stats(p):
    rss = [int(l.split()[1]) for l in open(f"/proc/{p.pid}/status") if l.startswith("VmRSS")][0]
    return {"threads": len(os.listdir(f"/proc/{p.pid}/task")),
            "fds": len(os.listdir(f"/proc/{p.pid}/fd")), "rssMiB": round(rss / 1024, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--flows", type=int, default=10000)
    ap.add_argument("--limit", type=int, default=1024)
    ap.add_argument("--send", type=int, default=200)
    a = ap.parse_args()
    data = tempfile.mkdtemp(prefix="many-flows-", dir=".")
    out = {"flows": a.flows, "limit": a.limit}
    try:
        p, addr, _ = start(a.binary, data, a.limit)
        t0 = time.time()
        hooks = []
        for i in range(a.flows):
            status, body = call(addr, "POST", "/api/flows", json.dumps({"name": f"f{i}", "rateLimit": None}))
            if status != 201:
                raise SystemExit(f"flow {i}: {status} {body}")
            f = json.loads(body)
            hooks.append((f["id"], f["webhookId"]))
        out["create"] = {"seconds": round(time.time() - t0, 1), **stats(p)}
        status, body = call(addr, "POST", "/api/keys", json.dumps({"name": "k", "scopes": ["ingest", "read"]}))
        key = json.loads(body)["key"]
        out["sigtermExitS"] = terminate(p)
        p, addr, seconds = start(a.binary, data, a.limit)
        out["restartAfterStop"] = {"listeningAfterS": round(seconds, 2),
                                   "readyz": call(addr, "GET", "/readyz")[0], **stats(p)}
        out["allOpenAfterStop"] = {"afterS": all_open(p), **stats(p)}
        c0 = cpu_seconds(p)
        time.sleep(5)
        out["allOpenAfterStop"]["idleCpuPercent"] = round((cpu_seconds(p) - c0) / 5 * 100, 1)
        sent = hooks[:: max(1, len(hooks) // a.send)][: a.send]
        for i, (_, wh) in enumerate(sent):
            req = urllib.request.Request(f"http://{addr}/webhooks/{wh}", data=json.dumps({"n": i}).encode(),
                                         method="POST", headers={"x-api-key": key, "Content-Type": "application/json"})
            opener.open(req).read()
        out["send"] = {"flows": len(sent), **stats(p)}
        p.kill()
        p.wait()
        p, addr, seconds = start(a.binary, data, a.limit)
        out["restartAfterKill9"] = {"listeningAfterS": round(seconds, 2),
                                    "readyz": call(addr, "GET", "/readyz")[0], **stats(p)}
        found = 0
        for i, (fid, _) in enumerate(sent):
            status, body = call(addr, "GET", f"/api/flows/{fid}/events")
            events = json.loads(body).get("events", []) if status == 200 else []
            found += int(bool(events) and events[0]["payload"].get("n") == i)
        out["readBack"] = {"found": found, "of": len(sent), **stats(p)}
        out["allOpenAfterKill9"] = {"afterS": all_open(p), **stats(p)}
        out["sigtermExitAtEndS"] = terminate(p)
        print(json.dumps(out))
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
