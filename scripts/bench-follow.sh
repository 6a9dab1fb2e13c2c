#!/usr/bin/env bash
# `make bench-follow`: a program delivered the way today's Perry Hub
# delivers it — announced over the WebSocket, downloaded once as base64,
# unpacked from its package — timed and measured.
#
# Starts perry-hub-sim in its real-hub mode with PROGRAM_MIB-MiB programs
# (default 128) and a release hone-build on the embedded store, publishes a
# tiny plugin for linux (a .tar.gz package) and windows (a .zip), and for
# each measures the time from the worker's upload of the package (the
# simulator's `expires_at_ms - expires_in_secs`, the moment the download
# link exists) to the job's completion as seen by polling /status every
# 20 ms: follow + download + base64 decode + sha256 + unpack + sha256 of
# the program + atomic placement + one transaction. Then, in the same run,
# `sha256sum` over the stored program (the same bytes), and the ratio.
# hone-build's peak RSS (VmHWM) at the end: goal < 32 MiB.
#
# Usage: scripts/bench-follow.sh [PROGRAM_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-128}
TAG=bench-follow
. scripts/lib.sh
hb_bins
hb_workdir

size=$((mib * 1024 * 1024))
hb_start_sim --program-size "$size" --build-delay-ms 0 --stage-delay-ms 0
# The program and the base64 download are over the default MAX_BODY_BYTES
# (200 MiB) at 128 MiB: the limit applies to the decoded package and to
# what is extracted.
hb_start_hone_build HONE_BUILD_MAX_BODY_BYTES=$((size * 2))

hb_tiny_plugin

peak_rss_mib() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$hb_pid/status"; }
now_ms() { date +%s%3N; }

echo "bench-follow: hone-build $base (pid $hb_pid), perry-hub-sim $sim ($sim_ws), program $mib MiB"
echo "bench-follow: command: scripts/bench-follow.sh $mib"
printf '%-9s %-8s %14s %14s %24s %15s\n' platform package "follow (s)" "sha256sum (s)" "ratio sha256sum/follow" "peak RSS (MiB)"
fail=0
for platform in linux windows; do
  version="1.0.0-$platform"
  hb_upload bench-follow "$version" "$platform"
  deadline=$(( $(date +%s) + 900 ))
  done_ms=
  while [ "$(date +%s)" -lt "$deadline" ]; do
    overall=$(hb_overall bench-follow "$version")
    if [ "$overall" = completed ]; then done_ms=$(now_ms); break; fi
    if [ "$overall" = failed ]; then
      echo "bench-follow: $platform failed: $(curl -sS "$base/status/bench-follow/$version")" >&2; exit 1
    fi
    sleep 0.02
  done
  [ -n "$done_ms" ] || { echo "bench-follow: $platform not completed in time" >&2; exit 1; }
  # When the package could first be downloaded: the worker's upload.
  uploaded_ms=$(curl -sS "$sim/_sim/jobs" | python3 -c '
import json, sys
jobs = [j for j in json.load(sys.stdin) if j["targets"] == [sys.argv[1]]]
a = [a for a in jobs[-1]["artifacts"] if a["downloads"]][-1]
print(a["expires_at_ms"] - int(sys.argv[2]) * 1000)' "$platform" 600)
  package=$(curl -sS "$sim/_sim/jobs" | python3 -c '
import json, sys
jobs = [j for j in json.load(sys.stdin) if j["targets"] == [sys.argv[1]]]
name = [a for a in jobs[-1]["artifacts"] if a["downloads"]][-1]["name"]
print(name[name.index(jobs[-1]["job_id"]) + len(jobs[-1]["job_id"]) + 1:])' "$platform")
  follow_s=$(python3 -c "print(f'{($done_ms - $uploaded_ms) / 1000:.3f}')")
  bin=$(ls "$work"/packages/bench-follow/"$version"/*.bin)
  sync
  t0=$(now_ms); sha256sum "$bin" >/dev/null; t1=$(now_ms)
  sha_s=$(python3 -c "print(f'{($t1 - $t0) / 1000:.3f}')")
  ratio=$(python3 -c "print(f'{($t1 - $t0) / max($done_ms - $uploaded_ms, 1):.2f}')")
  stored=$(stat -c %s "$bin")
  [ "$stored" = "$size" ] || { echo "bench-follow: stored $stored bytes, expected $size" >&2; fail=1; }
  printf '%-9s %-8s %14s %14s %24s %15s\n' "$platform" "$package" "$follow_s" "$sha_s" "$ratio" "$(peak_rss_mib)"
done
rss=$(peak_rss_mib)
if python3 -c "import sys; sys.exit(0 if $rss < 32 else 1)"; then
  echo "bench-follow: peak RSS $rss MiB (goal < 32 MiB): ok"
else
  echo "bench-follow: peak RSS $rss MiB is over the 32 MiB goal" >&2; fail=1
fi
exit $fail
