"""Reads a flow's SSE tail with real client libraries and prints each event's JSON.

Usage: sse_clients.py <library> <url> <key> <count>
  library: sseclient (sseclient-py over requests) or httpx-sse.
Prints one line per event: the parsed `data` re-serialised compactly (json.dumps with
sort_keys), so the caller can compare what each library decoded. Exit 3 when the
library is not installed (the caller skips or fails, as it is told).
"""

import json
import sys


def print_events(events, count: int) -> int:
    """Prints each event's data as compact JSON until `count` are seen; 0 then, else 1."""
    seen = 0
    for data in events:
        if not data:
            continue
        print(json.dumps(json.loads(data), sort_keys=True), flush=True)
        seen += 1
        if seen == count:
            return 0
    return 1


def main() -> int:
    library, url, key, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    headers = {"X-API-Key": key, "Accept": "text/event-stream"}
    if library == "sseclient":
        try:
            import requests
            import sseclient
        except ImportError:
            return 3
        resp = requests.get(url, headers=headers, stream=True, timeout=30)
        resp.raise_for_status()
        return print_events((e.data for e in sseclient.SSEClient(resp).events()), count)
    if library == "httpx-sse":
        try:
            import httpx
            from httpx_sse import connect_sse
        except ImportError:
            return 3
        with httpx.Client(timeout=30) as client:
            with connect_sse(client, "GET", url, headers=headers) as source:
                return print_events((e.data for e in source.iter_sse()), count)
    print(f"unknown library {library}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
