#!/usr/bin/env bash
# `make bench-logs`: what reading a long build log costs, whole
# (`GET /logs/…`) against its last 200 lines (`?tail=200`, what the build
# page asks for about every second while a build runs), on the embedded
# store.
#
# Starts perry-hub-sim in its real-hub mode with builds that print LINES
# compiler lines (default 40000: more than one attempt keeps under the
# default BUILD_LOG_MAX_BYTES of 1 MiB, so the log is at its bound) and a
# release hone-build, publishes a plugin for linux, waits until the build
# completed and its log stopped changing, then times REQUESTS (default 200)
# GETs of each form with one curl process (one kept-alive connection) and
# prints bytes per answer, the mean time per answer and the ratios.
#
# Usage: scripts/bench-logs.sh [LINES]   (REQUESTS=N in the environment)
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-40000}
requests=${REQUESTS:-200}
TAG=bench-logs
. scripts/lib.sh
hb_bins
hb_workdir

# Queued a second first: hone-build subscribes before the first line (the
# hub replays nothing).
hb_start_sim --log-lines "$lines" --build-delay-ms 1000 --stage-delay-ms 0
hb_start_hone_build

hb_tiny_plugin

echo "bench-logs: hone-build $base (pid $hb_pid), perry-hub-sim $sim, $lines log lines per build"
echo "bench-logs: command: REQUESTS=$requests scripts/bench-logs.sh $lines"
hb_upload bench-logs 1.0.0 linux
deadline=$(( $(date +%s) + 600 ))
while :; do
  overall=$(hb_overall bench-logs 1.0.0)
  [ "$overall" = completed ] && break
  [ "$overall" = failed ] && { echo "bench-logs: the build failed" >&2; exit 1; }
  [ "$(date +%s)" -lt "$deadline" ] || { echo "bench-logs: not completed in time" >&2; exit 1; }
  sleep 0.2
done
url="$base/logs/bench-logs/1.0.0/linux"
# hone-build writes its last lines for a build just after it completed.
last=
while :; do
  now=$(curl -sS "$url" | sha256sum)
  [ "$now" = "$last" ] && break
  last=$now
  sleep 1
done
curl -sS "$url" >"$work/whole.txt"
curl -sS "$url?tail=200" >"$work/tail.txt"
echo "bench-logs: the log: $(wc -l <"$work/whole.txt") lines, $(wc -c <"$work/whole.txt") bytes as text; first: $(head -n1 "$work/whole.txt" | cut -c1-110)"
# Every line the hub sent reached the store (none "lost here").
if grep -q 'line(s) lost here' "$work/whole.txt"; then
  echo "bench-logs: lines were lost: $(grep -m1 'lost here' "$work/whole.txt")" >&2
  exit 1
fi

# measure URL: "<bytes per answer> <mean ms per answer>" over $requests GETs.
measure() {
  local args=() i
  for i in $(seq "$requests"); do args+=(-o /dev/null "$1"); done
  curl -sS -w '%{http_code} %{size_download} %{time_total}\n' "${args[@]}" |
    awk -v url="$1" '$1 != 200 { print "bench-logs: " url " answered " $1 > "/dev/stderr"; bad = 1 }
      { b = $2; t += $3 } END { if (bad) exit 1; printf "%d %.3f\n", b, t * 1000 / NR }'
}
measure "$url?tail=200" >/dev/null # warm-up
read -r whole_b whole_ms < <(measure "$url")
read -r tail_b tail_ms < <(measure "$url?tail=200")
printf '%-22s %14s %18s\n' request "bytes/answer" "mean ms/answer"
printf '%-22s %14s %18s\n' "GET /logs/…" "$whole_b" "$whole_ms"
printf '%-22s %14s %18s\n' "GET /logs/…?tail=200" "$tail_b" "$tail_ms"
python3 -c "
wb, wm, tb, tm = $whole_b, $whole_ms, $tail_b, $tail_ms
print(f'bench-logs: ratio whole/tail: {wb / tb:.0f}x the bytes, {wm / max(tm, 1e-6):.1f}x the time per answer')
"
