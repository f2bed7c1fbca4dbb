#!/usr/bin/env python3
"""Durable ingest over HTTPS against plaintext, in alternating rounds (same machine, same run).

    python3 examples/tls_vs_plain.py <eventmesh binary> [rounds]

Each run: a fresh server (`--fsync always`; `--tls-self-signed` for TLS), one flow with no
rate limit, then `eventmesh bench http` (64 connections, 8 s, 256 B, HTTP/1.1 keep-alive;
over TLS it trusts the self-signed certificate through EVENTMESH_CACERT). One JSON line
per run. No proxy.
"""
import json, os, re, shutil, ssl, subprocess, sys, tempfile, urllib.request
B = sys.argv[1]
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
ADMIN = "tls-bench-admin-key-0123456789"
def run(tls, rnd):
    d = tempfile.mkdtemp(dir=".")
    args = [B, "serve", "--data-dir", d, "--listen", "127.0.0.1:0", "--admin-key", ADMIN]
    if tls: args.append("--tls-self-signed")
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in p.stdout:
        m = re.search(r"listening on (https?)://(\S+)", line)
        if m: break
    scheme, addr = m.group(1), m.group(2)
    host = addr.replace("127.0.0.1", "localhost")
    base = f"{scheme}://{host}"
    ctx = ssl.create_default_context(cafile=f"{d}/tls/self-signed-cert.pem") if tls else None
    op = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx))
    def call(path, body):
        r = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": "Bearer " + ADMIN, "Content-Type": "application/json"})
        return json.loads(op.open(r).read())
    f = call("/api/flows", {"name": "b", "rateLimit": None})
    k = call("/api/keys", {"name": "k", "scopes": ["ingest"]})["key"]
    env = dict(os.environ, EVENTMESH_CACERT=f"{d}/tls/self-signed-cert.pem")
    out = subprocess.run([B, "bench", "http", "--url", f["webhookUrl"], "--key", k, "--connections", "64",
        "--duration", "8", "--size", "256"], capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1]
    r = json.loads(out)
    print(json.dumps({"round": rnd, "tls": tls, "eventsPerSec": round(r["eventsPerSec"]), "p50Us": r["p50Us"], "p99Us": r["p99Us"], "errors": r["errors"]}), flush=True)
    p.kill(); p.wait(); shutil.rmtree(d, ignore_errors=True)
for rnd in range(1, ROUNDS + 1):
    run(False, rnd); run(True, rnd)
