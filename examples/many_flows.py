#!/usr/bin/env python3
"""Durable ingest spread over many flows, against one flow, in alternating rounds.

    python3 examples/many_flows.py <eventmesh binary> [--flows 1,10,1000] [--rounds 3]
        [--seconds 10] [--connections 64] [--size 256] [--fsync always]
        [--client <eventmesh binary>] [--baseline <eventmesh binary>]

For each round and each flow count: a fresh data directory, a server on
--fsync always, that many flows with no rate limit, then `eventmesh bench http
--urls-file` (closed loop, every event to the next flow in turn, each with its own
Idempotency-Key). Prints one JSON line per run, with the server's thread count and open
files after the flows were made.

--baseline runs a second server build in the same rounds, alternating with the first.
--client names the build whose `bench http` drives every run (default: the first), so
that two server builds are measured with the same load generator on the same cores.
"""
import argparse, json, os, re, shutil, socket, subprocess, sys, tempfile, time, urllib.request

# Straight to the local server, whatever proxy the environment names.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def call(base, key, method, path, body=None):
    req = urllib.request.Request(base + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    with OPENER.open(req, timeout=60) as r:
        return json.loads(r.read() or b"null")

def proc_counts(pid):
    threads = int(re.search(r"Threads:\s+(\d+)", open(f"/proc/{pid}/status").read()).group(1))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{pid}/status").read()).group(1)) * 1024
    return threads, fds, rss

def run(binary, flows, a):
    data = tempfile.mkdtemp(prefix="many-flows-", dir=".")
    port = free_port()
    admin = "many-flows-admin-key-0123456789"
    server = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data,
        "--admin-key", admin, "--fsync", a.fsync], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                OPENER.open(base + "/readyz", timeout=1); break
            except OSError:
                time.sleep(0.05)
        key = call(base, admin, "POST", "/api/keys", {"name": "bench", "scopes": ["ingest"]})["key"]
        urls = []
        for i in range(flows):
            f = call(base, admin, "POST", "/api/flows", {"name": f"f{i}", "rateLimit": None})
            urls.append(f["webhookUrl"])
        threads, fds, rss = proc_counts(server.pid)
        with tempfile.NamedTemporaryFile("w", delete=False, suffix=".urls") as uf:
            uf.write("\n".join(urls)); path = uf.name
        out = subprocess.run([a.client or binary, "bench", "http", "--urls-file", path, "--key", key,
            "--connections", str(a.connections), "--duration", str(a.seconds), "--size", str(a.size)],
            capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        os.unlink(path)
        line = json.loads(out)
        line.update({"server": binary, "serverThreads": threads, "serverFds": fds, "serverRssBytes": rss, "fsync": a.fsync})
        return line
    finally:
        server.terminate(); server.wait(timeout=60); shutil.rmtree(data, ignore_errors=True)

def main():
    p = argparse.ArgumentParser()
    p.add_argument("binary")
    p.add_argument("--flows", default="1,10,1000")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--fsync", default="always")
    p.add_argument("--client", default=None)
    p.add_argument("--baseline", default=None)
    a = p.parse_args()
    a.client = a.client or a.binary
    builds = [a.binary] + ([a.baseline] if a.baseline else [])
    for r in range(a.rounds):
        for n in [int(x) for x in a.flows.split(",")]:
            for binary in builds:
                line = run(binary, n, a)
                line["round"] = r + 1
                print(json.dumps(line), flush=True)

if __name__ == "__main__":
    main()
