#!/usr/bin/env bash
# Load test of `glorank serve` as a user runs it: the release binary on a trained run,
# CLIENTS concurrent HTTP clients for SECONDS (the `serve_load` example's `--url` mode), the
# server's resident memory before and after, then SIGTERM and the time it takes to exit.
#
#   scripts/serve_load.sh [RUN_DIR [CLIENTS [SECONDS]]]
#
#   RUN_DIR   a trained run (default runs/demo-quick, written by `glorank demo --quick`
#             first when absent: about a minute and a half on two cores)
#   CLIENTS   concurrent clients (default 64)
#   SECONDS   how long they send (default 60)
#
# Everything is bounded: the clients stop at SECONDS (each call times out after 30 s), the
# script gives the server 30 s to exit after SIGTERM and kills it after that (reported).
# Prints one Markdown row: clients, seconds, requests, errors, p50/p99, RSS before and
# after, shutdown time; then the RSS sampled every 5 s during the load. Exits non-zero when a call failed or the server did not exit.
set -euo pipefail
RUN=${1:-runs/demo-quick}
CLIENTS=${2:-64}
SECS=${3:-60}
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release --locked -q -p glorank-cli
cargo build --release --locked -q -p glorank-examples --example serve_load
BIN=$TARGET/release/glorank
CLIENT=$TARGET/release/examples/serve_load
if [ ! -d "$RUN" ]; then
    "$BIN" demo --quick --quiet --out "$RUN" >/dev/null
fi

LOG=$(mktemp)
trap 'rm -f "$LOG"; [ -n "${PID:-}" ] && kill -9 "$PID" 2>/dev/null || true' EXIT
"$BIN" serve --model "$RUN" --set serve.addr=127.0.0.1:0 >"$LOG" 2>&1 &
PID=$!
for _ in $(seq 1 300); do
    grep -q "listening on" "$LOG" && break
    kill -0 "$PID" 2>/dev/null || { cat "$LOG"; exit 1; }
    sleep 0.1
done
URL=$(sed -n 's/^listening on //p' "$LOG" | head -1)
[ -n "$URL" ] || { echo "the server did not start:"; cat "$LOG"; exit 1; }
rss() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$PID/status"; }
# One warm-up call, so the first RSS is the served model's, not the bare process's.
"$CLIENT" "$RUN" --url "$URL" 1 1 >/dev/null
BEFORE=$(rss)
# Resident memory every 5 s while the clients send, to tell a plateau from a leak.
( while kill -0 "$PID" 2>/dev/null; do sleep 5; rss; echo; done ) >"$LOG.rss" 2>/dev/null &
SAMPLER=$!
RESULT=$(timeout $((SECS + 60)) "$CLIENT" "$RUN" --url "$URL" "$CLIENTS" "$SECS")
kill "$SAMPLER" 2>/dev/null || true
AFTER=$(rss)
SERIES=$(grep -v '^$' "$LOG.rss" | paste -sd, -)
rm -f "$LOG.rss"
T0=$(date +%s%N)
kill -TERM "$PID"
EXITED=no
for _ in $(seq 1 300); do
    if ! kill -0 "$PID" 2>/dev/null; then EXITED=yes; break; fi
    sleep 0.1
done
STOP=$(( ($(date +%s%N) - T0) / 1000000 ))
[ "$EXITED" = yes ] || kill -9 "$PID"
wait "$PID" 2>/dev/null || true
PID=
python3 - "$RESULT" "$BEFORE" "$AFTER" "$STOP" "$EXITED" "$SERIES" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
before, after, stop, exited = sys.argv[2], sys.argv[3], int(sys.argv[4]) / 1000, sys.argv[5]
print("| clients | seconds | requests | errors | requests/s | p50 (ms) | p99 (ms) | RSS before (MiB) | RSS after (MiB) | exit after SIGTERM |")
print("|---|---|---|---|---|---|---|---|---|---|")
print(f"| {r['clients']} | {r['seconds']:.0f} | {r['requests']} | {r['errors']} | {r['requests_per_s']:.0f} "
      f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {before} | {after} | "
      f"{f'{stop:.2f} s' if exited == 'yes' else 'did not exit (killed)'} |")
print(f"\nRSS every 5 s during the load (MiB): {sys.argv[6]}")
sys.exit(0 if r["errors"] == 0 and exited == "yes" else 1)
EOF
