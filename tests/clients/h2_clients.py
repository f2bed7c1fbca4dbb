"""HTTP/2 with real client libraries, for tests/it/http_transports.rs.

Usage:
  h2_clients.py httpx <base-url> <cacert|-> <webhook-id> <flow-id> <key>
      httpx with http2=True (over TLS, ALPN h2; with "-" as cacert, h2c with prior
      knowledge): ingests one event, reads it back, then reads it from the SSE tail.
      Prints one JSON object: each step's HTTP version and what it got.
  h2_clients.py flood <host> <port> <streams>
      The rapid-reset flood (CVE-2023-44487) with the `h2` library on h2c: opens
      <streams> streams and resets each at once, as fast as the socket takes them, then
      reads until the server ends the connection. Prints {"goaway": <error code or
      null>, "sent": n, "closed": bool}.
Exit 3 when the library is not installed (the caller skips or fails, as it is told).
"""

import json
import socket
import sys


def run_httpx(base, cacert, webhook, flow, key):
    try:
        import httpx
        import h2  # noqa: F401  (httpx's http2 extra)
    except ImportError:
        return 3
    out = {}
    kwargs = {"http2": True, "timeout": 30, "trust_env": False}
    if cacert == "-":
        kwargs["http1"] = False  # h2c with prior knowledge
    else:
        kwargs["verify"] = cacert
    with httpx.Client(**kwargs) as client:
        r = client.post(f"{base}/webhooks/{webhook}", json={"via": "httpx-h2"},
                        headers={"X-API-Key": key, "Idempotency-Key": "h2-1"})
        out["ingest"] = {"version": r.http_version, "status": r.status_code, "body": r.json()}
        r = client.get(f"{base}/api/flows/{flow}/events", headers={"X-API-Key": key})
        out["read"] = {"version": r.http_version, "status": r.status_code,
                       "payloads": [e["payload"] for e in r.json()["events"]]}
        with client.stream("GET", f"{base}/api/flows/{flow}/stream?from=0",
                           headers={"X-API-Key": key, "Accept": "text/event-stream"}) as s:
            data = None
            for line in s.iter_lines():
                if line.startswith("data:"):
                    data = json.loads(line[5:])
                    break
            out["sse"] = {"version": s.http_version, "status": s.status_code,
                          "payload": data and data["payload"]}
    print(json.dumps(out, sort_keys=True))
    return 0


def run_flood(host, port, streams):
    try:
        import h2.config
        import h2.connection
        import h2.events
    except ImportError:
        return 3
    sock = socket.create_connection((host, port))
    sock.settimeout(30)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    headers = [(":method", "GET"), (":path", "/healthz"), (":scheme", "http"),
               (":authority", f"{host}:{port}")]
    sent, goaway, closed = 0, None, False
    try:
        for _ in range(streams):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, headers, end_stream=True)
            conn.reset_stream(sid)
            sent += 1
            if sent % 100 == 0:
                sock.sendall(conn.data_to_send())
        sock.sendall(conn.data_to_send())
    except (BrokenPipeError, ConnectionResetError, h2.exceptions.ProtocolError):
        closed = True
    # Read until the server ends the connection (GOAWAY, then close).
    while True:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            closed = True
            break
        if not data:
            closed = True
            break
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            continue
        for e in events:
            if isinstance(e, h2.events.ConnectionTerminated):
                goaway = int(e.error_code)
        try:
            sock.sendall(conn.data_to_send())
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
    print(json.dumps({"goaway": goaway, "sent": sent, "closed": closed}))
    return 0


def main():
    if sys.argv[1] == "httpx":
        return run_httpx(*sys.argv[2:7])
    if sys.argv[1] == "flood":
        return run_flood(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    print(f"unknown mode {sys.argv[1]}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
