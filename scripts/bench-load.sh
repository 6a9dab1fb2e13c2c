#!/usr/bin/env bash
# Load benchmark: throughput, latency, errors and memory of hone-build under a
# mixed load, then /health latency next to stalled connections.
#
# Starts perry-hub-sim and a release hone-build (embedded store, temporary
# directories, UPLOAD_SECRET set, WORKERS=16) on loopback, then runs
# examples/loadgen.rs:
#   1. `loadgen mix`: 64 keep-alive connections for 30 s over
#      /health 40 %, /status 30 %, /upload 15 %, /artifact 15 %; prints
#      req/s, p50/p90/p99/max per kind, unexpected statuses, a per-second
#      table and hone-build's RSS series (goal: RSS flat after warm-up).
#   2. `loadgen stalled`: 500 connections sending half a request, while
#      /health is probed for 10 s (goal: every probe within 1 s).
#
# Usage: scripts/bench-load.sh
# Env:
#   BIN_DIR            take hone-build and perry-hub-sim from there (loadgen
#                      is still built unless LOADGEN names its binary)
#   MIX_SECONDS        30; 0 skips the mix
#   MIX_CONNECTIONS    64
#   MIX_WEIGHTS        health,status,upload,artifact shares (40,30,15,15)
#   STALLED_CONNECTIONS 500; 0 skips the stalled phase
#   STALLED_SECONDS    10
#   STALLED_CONTENT_LENGTH 1000 (bodies up to 1024 bytes are read by tiny_http
#                      before dispatch; larger ones reach the worker lanes)
#   LOG_DIR            copy hone-build's and the simulator's logs there
set -euo pipefail
cd "$(dirname "$0")/.."

mix_seconds=${MIX_SECONDS:-30}
mix_connections=${MIX_CONNECTIONS:-64}
stalled_connections=${STALLED_CONNECTIONS:-500}
stalled_seconds=${STALLED_SECONDS:-10}
mix_weights=${MIX_WEIGHTS:-40,30,15,15}
stalled_content_length=${STALLED_CONTENT_LENGTH:-1000}

TAG=bench-load
. scripts/lib.sh
hb_bins
[ -n "${LOADGEN:-}" ] || cargo build --release --example loadgen --quiet
loadgen=${LOADGEN:-$(pwd)/target/release/examples/loadgen}

# 500 stalled sockets on each side, plus the mix's: raise the soft limit.
ulimit -n 4096 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "bench-load: open files limit $(ulimit -n)"

hb_before_remove() {
  if [ -n "${LOG_DIR:-}" ]; then
    mkdir -p "$LOG_DIR" && cp "$work"/*.log "$work"/sim.* "$LOG_DIR"/ 2>/dev/null || true
  fi
}
hb_workdir
hb_start_sim --callbacks

secret="bench-load-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
hb_start_hone_build HONE_BUILD_UPLOAD_SECRET="$secret" HONE_BUILD_WORKERS=16
echo "bench-load: hone-build $base (pid $hb_pid, WORKERS=16, embedded store), perry-hub-sim $sim"
echo

if [ "$mix_seconds" != 0 ]; then
  "$loadgen" mix --base "$base" --sim "$sim" --connections "$mix_connections" \
    --seconds "$mix_seconds" --secret "$secret" --pid "$hb_pid" --weights "$mix_weights"
  echo
fi
if [ "$stalled_connections" != 0 ]; then
  "$loadgen" stalled --base "$base" --connections "$stalled_connections" \
    --seconds "$stalled_seconds" --pid "$hb_pid" --content-length "$stalled_content_length"
  echo
fi

if ! kill -0 "$hb_pid" 2>/dev/null; then
  echo "bench-load: hone-build is no longer running; its log:" >&2
  tail -n 50 "$work/hone-build.log" >&2
  exit 1
fi
warnings=$(grep -c -E ' (WARN|ERROR) ' "$work/hone-build.log" || true)
echo "bench-load: hone-build logged $warnings warning/error line(s) (LOG_LEVEL=info; access lines not counted)"
if [ "$warnings" != 0 ]; then
  grep -E ' (WARN|ERROR) ' "$work/hone-build.log" | sed -E 's/token=[^ &]*/token=…/g' |
    cut -c1-200 | sort | uniq -c | sort -rn | head -n 10
fi
