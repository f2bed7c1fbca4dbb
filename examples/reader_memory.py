"""Server memory under readers that do not keep up (issue 14's bench).

Starts `eventmesh serve` (the binary given), stores 100 events of about 1 MiB in one
flow, then opens 20 SSE subscribers that never read and 16 page readers that read
their answer slowly (4 KiB every 0.1 s), and prints the server's RSS before, at its
peak while they hang on, and the growth, as one JSON line.

Usage: python3 examples/reader_memory.py <path to eventmesh> [--hold <seconds>]
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ADMIN = "bench-admin-key-0123456789abcdef"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def request(base, method, path, body=None, headers=None):
    req = urllib.request.Request(base + path, method=method, data=body)
    req.add_header("X-API-Key", ADMIN)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


def main():
    binary = sys.argv[1]
    hold = float(sys.argv[sys.argv.index("--hold") + 1]) if "--hold" in sys.argv else 10.0
    data = tempfile.mkdtemp()
    port = 18000 + os.getpid() % 1000
    server = subprocess.Popen(
        [binary, "serve", "--listen", f"127.0.0.1:{port}", "--admin-key", ADMIN,
         "--data-dir", data, "--body-limit", "2097152"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    server.stdout.readline()
    base = f"http://127.0.0.1:{port}"
    try:
        flow = request(base, "POST", "/api/flows", json.dumps({"name": "mem", "rateLimit": None}).encode(),
                       {"content-type": "application/json"})
        key = request(base, "POST", "/api/keys", json.dumps({"name": "k", "scopes": ["ingest", "read"]}).encode(),
                      {"content-type": "application/json"})["key"]
        pad = "x" * (1024 * 1024 - 64)
        for i in range(100):
            body = json.dumps({"i": i, "pad": pad}).encode()
            req = urllib.request.Request(flow["webhookUrl"], method="POST", data=body)
            req.add_header("X-API-Key", key)
            req.add_header("content-type", "application/json")
            urllib.request.urlopen(req, timeout=60).read()
        time.sleep(1)
        before = rss_mb(server.pid)
        socks = []
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(f"GET /api/flows/{flow['id']}/stream?from=0 HTTP/1.1\r\nhost: a\r\nx-api-key: {key}\r\n\r\n".encode())
            socks.append(s)
        stop = threading.Event()

        def slow_page():
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(f"GET /api/flows/{flow['id']}/events?from=0&limit=1000 HTTP/1.1\r\nhost: a\r\nx-api-key: {key}\r\nconnection: close\r\n\r\n".encode())
            while not stop.is_set():
                if not s.recv(4096):
                    break
                time.sleep(0.1)
            s.close()

        readers = [threading.Thread(target=slow_page) for _ in range(16)]
        for t in readers:
            t.start()
        peak = before
        end = time.time() + hold
        while time.time() < end:
            peak = max(peak, rss_mb(server.pid))
            time.sleep(0.2)
        stop.set()
        for t in readers:
            t.join()
        for s in socks:
            s.close()
        print(json.dumps({"rssBeforeMb": round(before, 1), "rssPeakMb": round(peak, 1),
                          "growthMb": round(peak - before, 1), "sseIdle": 20, "slowPages": 16,
                          "events": 100, "eventBytes": 1024 * 1024}))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
