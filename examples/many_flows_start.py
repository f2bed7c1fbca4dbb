#!/usr/bin/env python3
"""Start-up with many flows under a small open-files limit.

    python3 examples/many_flows_start.py <eventmesh binary> [--flows 10000] [--limit 1024]

Creates that many flows on a fresh server (no rate limit), stops it with SIGTERM,
restarts it under `ulimit -n <limit>`, and prints the seconds until it listens (it
listens once every flow is open, and `/readyz` answers 200 then), its threads, open
files and RSS, and how many flows `GET /api/flows` lists. Uses no proxy.
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
    for line in p.stdout:
        m = re.search(r"listening on http://(\S+)", line)
        if m:
            return p, m.group(1), time.time() - t0
    raise SystemExit("the server exited before listening")


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
    a = ap.parse_args()
    data = tempfile.mkdtemp(prefix="many-flows-", dir=".")
    try:
        p, addr, _ = start(a.binary, data)
        for i in range(a.flows):
            call(addr, "POST", "/api/flows", json.dumps({"name": f"f{i}", "rateLimit": None}))
        created = stats(p)
        p.send_signal(signal.SIGTERM)
        p.wait()
        p, addr, seconds = start(a.binary, data, a.limit)
        ready = call(addr, "GET", "/readyz")[0]
        after = stats(p)
        status, body = call(addr, "GET", "/api/flows?limit=100000")
        listed = len(json.loads(body)) if status == 200 and body.startswith("[") else \
            len(json.loads(body).get("flows", [])) if status == 200 else None
        p.kill()
        p.wait()
        print(json.dumps({"flows": a.flows, "limit": a.limit, "created": created,
                          "listeningAfterS": round(seconds, 2), "readyz": ready,
                          "restarted": after, "listed": listed}))
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
