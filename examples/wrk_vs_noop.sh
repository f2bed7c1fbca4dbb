#!/usr/bin/env bash
# Issue 7's throughput target, reproducible in one command: the no-op hyper server (the
# ceiling) and `eventmesh serve --fsync always` under the same wrk line, alternating,
# ROUNDS times; prints each round's ratio and the median and overall ratios.
#
#   cargo build --release --bin eventmesh --example noop_server
#   ROUNDS=5 bash examples/wrk_vs_noop.sh
#
# Optional: BIN (the eventmesh binary to measure), WRK_ARGS (default -t2 -c64 -d10s).
# One flow with its rate limit off, a valid API key, no idempotency key, 256-byte JSON
# bodies (examples/wrk-post.lua). Needs wrk, curl and python3.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/eventmesh}
NOOP=${NOOP:-$ROOT/target/release/examples/noop_server}
ROUNDS=${ROUNDS:-3}
WRK_ARGS=${WRK_ARGS:--t2 -c64 -d10s}
LUA=$ROOT/examples/wrk-post.lua
ADMIN=ek_admin_wrk_vs_noop_measurement_0123456789
EM_ADDR=127.0.0.1:39471
NOOP_ADDR=127.0.0.1:39472
DATA=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$DATA"
}
trap cleanup EXIT

await() { # url
    for _ in $(seq 200); do curl -sf "$1" >/dev/null && return 0; sleep 0.05; done
    echo "no answer from $1" >&2
    exit 1
}
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
rate() { # url [key]
    KEY=${2:-} wrk $WRK_ARGS -s "$LUA" "$1" | awk '/Requests\/sec/ {print $2}'
}

"$BIN" serve --data-dir "$DATA" --admin-key "$ADMIN" --listen "$EM_ADDR" --fsync always >/dev/null 2>&1 &
PIDS+=($!)
await "http://$EM_ADDR/readyz"
URL=$(curl -sf -H "Authorization: Bearer $ADMIN" -H 'content-type: application/json' \
    -d '{"name":"wrk","rateLimit":null}' "http://$EM_ADDR/api/flows" | json_field webhookUrl)
KEY=$(curl -sf -H "Authorization: Bearer $ADMIN" -H 'content-type: application/json' \
    -d '{"name":"wrk","scopes":["ingest"]}' "http://$EM_ADDR/api/keys" | json_field key)

RATIOS=()
SUM_NOOP=0
SUM_EM=0
for round in $(seq "$ROUNDS"); do
    "$NOOP" "$NOOP_ADDR" >/dev/null 2>&1 &
    NP=$!
    await "http://$NOOP_ADDR/webhooks/x"
    ceiling=$(rate "http://$NOOP_ADDR/webhooks/x")
    kill "$NP"
    wait "$NP" 2>/dev/null || true
    ingest=$(rate "$URL" "$KEY")
    ratio=$(python3 -c "print(f'{$ingest / $ceiling:.3f}')")
    RATIOS+=("$ratio")
    SUM_NOOP=$(python3 -c "print($SUM_NOOP + $ceiling)")
    SUM_EM=$(python3 -c "print($SUM_EM + $ingest)")
    echo "round $round: no-op $ceiling req/s, eventmesh $ingest req/s, ratio $ratio"
done
python3 -c "
import statistics
r = [float(x) for x in '${RATIOS[*]}'.split()]
print(f'median ratio {statistics.median(r):.3f}, overall {$SUM_EM / $SUM_NOOP:.3f}, range {min(r):.3f}-{max(r):.3f}')"
