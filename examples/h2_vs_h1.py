#!/usr/bin/env python3
"""Durable ingest over HTTP/2 against HTTP/1.1 with the same load generator (h2load), in
alternating rounds on one server build.

    python3 examples/h2_vs_h1.py <eventmesh binary> [rounds] [--tls]

Each run: a fresh server (`--fsync always`; `--tls-self-signed` with --tls), one flow
with no rate limit, then h2load (Debian's nghttp2-client) posting the same 256-byte JSON
body: 64 clients, one request in flight each (`-m 1`), 8 s, with `--h1` for HTTP/1.1.
No idempotency key, so nothing is deduplicated. One JSON line per run.
"""
import json, os, re, shutil, ssl, subprocess, sys, tempfile, urllib.request

B = sys.argv[1]
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 3
TLS = "--tls" in sys.argv
ADMIN = "h2-bench-admin-key-0123456789"


def run(proto, rnd):
    d = tempfile.mkdtemp(dir=".")
    args = [B, "serve", "--data-dir", d, "--listen", "127.0.0.1:0", "--admin-key", ADMIN]
    if TLS:
        args.append("--tls-self-signed")
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in p.stdout:
        m = re.search(r"listening on (https?)://(\S+)", line)
        if m:
            break
    base = f"{m.group(1)}://{m.group(2)}"
    ctx = ssl.create_default_context(cafile=f"{d}/tls/self-signed-cert.pem") if TLS else None
    op = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                     urllib.request.HTTPSHandler(context=ctx))

    def call(path, body):
        r = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                   headers={"Authorization": "Bearer " + ADMIN,
                                            "Content-Type": "application/json"})
        return json.loads(op.open(r).read())

    f = call("/api/flows", {"name": "b", "rateLimit": None})
    k = call("/api/keys", {"name": "k", "scopes": ["ingest"]})["key"]
    body = os.path.join(d, "body.json")
    with open(body, "w") as fh:
        fh.write(json.dumps({"event": "bench", "pad": "x" * 220})[:256])
    cmd = ["h2load", "-c", "64", "-m", "1", "-D", "8", "-d", body, "-H", f"x-api-key: {k}",
           "-H", "content-type: application/json", f["webhookUrl"]]
    if proto == "h1":
        cmd.insert(1, "--h1")
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    rps = float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out).group(1))
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out).groups()
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out).group(1)
    print(json.dumps({"round": rnd, "protocol": proto, "tls": TLS, "reqPerSec": round(rps),
                      "meanRequestTime": mean, "2xx": int(codes[0]),
                      "non2xx": sum(map(int, codes[1:]))}), flush=True)
    p.kill()
    p.wait()
    shutil.rmtree(d, ignore_errors=True)


for rnd in range(1, ROUNDS + 1):
    run("h1", rnd)
    run("h2", rnd)
