#!/usr/bin/env bash
# `make bench`: memory of the publishing path, POST /upload and the first
# submission to Perry Hub.
#
# Starts perry-hub-sim (never_callback: no artifact comes back) and a
# release hone-build on the embedded store, in temporary directories, on
# free ports. Generates a tarball of SIZE_MIB (the gzip magic bytes, then
# random bytes), uploads it with curl as a raw body for one platform, and
# waits until the simulator has recorded the accepted submission (its
# tarball_b64 part is the whole tarball, base64-encoded). Then it reads
# hone-build's peak RSS (VmHWM): the body is streamed to disk and the
# submission streamed from disk, so memory must not grow with the tarball
# (goal: < 64 MiB).
#
# Usage: scripts/bench-upload.sh [SIZE_MIB]   (default 150; at most 199,
# the default MAX_BODY_BYTES being 200 MiB)
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-150}
case "$mib" in
'' | *[!0-9]*)
  echo "bench-upload: SIZE_MIB must be a whole number" >&2
  exit 2
  ;;
esac
if [ "$mib" -lt 1 ] || [ "$mib" -gt 199 ]; then
  echo "bench-upload: SIZE_MIB must be 1-199 (MAX_BODY_BYTES is 200 MiB)" >&2
  exit 2
fi

TAG=bench-upload
. scripts/lib.sh
hb_bins
hb_workdir

die() {
  echo "bench-upload: $*" >&2
  if [ -s "${work:-}/hone-build.log" ]; then
    echo "--- hone-build log (last lines):" >&2
    tail -n 20 "$work/hone-build.log" >&2
  fi
  exit 1
}

now() { date +%s.%N; }

# Reads a JSON document on stdin and prints what a Python expression of it
# (`d`) evaluates to.
json() { python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }

"$bin/perry-hub-sim" --port 0 --callbacks >"$work/sim.out" 2>"$work/sim.err" &
pids+=($!)
sim=$(wait_for_line "$work/sim.out" 'http://127.0.0.1:[0-9]*')
curl -fsS --max-time 10 -X POST -H 'Content-Type: application/json' \
  -d '{"never_callback":true}' "$sim/_sim/config" >/dev/null

hb_start_hone_build

peak_rss_mib() {
  [ -r "/proc/$hb_pid/status" ] || die "hone-build (pid $hb_pid) is gone"
  awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$hb_pid/status"
}

echo "bench-upload: hone-build $base (pid $hb_pid), perry-hub-sim $sim"
echo "bench-upload: peak RSS after start-up: $(peak_rss_mib) MiB"

tarball="$work/plugin.tar.gz"
printf '\037\213' >"$tarball"
head -c $((mib * 1024 * 1024 - 2)) /dev/urandom >>"$tarball"
size=$(stat -c %s "$tarball")
sha=$(sha256sum "$tarball" | cut -d' ' -f1)
sync

# -T streams the file (with Content-Length); no "Expect: 100-continue".
t0=$(now)
out=$(curl -sS --max-time 300 -o "$work/upload.json" -w '%{http_code} %{time_total}' -X POST \
  -T "$tarball" -H 'Expect:' -H 'Content-Type: application/gzip' \
  "$base/upload?name=bench-upload&version=1.0.0&platforms=linux") ||
  die "upload failed"
code=${out%% *}
upload_secs=${out#* }
[ "$code" = 200 ] || die "upload answered $code: $(cat "$work/upload.json")"
status=$(json 'd["builds"][0]["status"]' <"$work/upload.json")

# The first submission is attempted before the answer; should it still be
# pending, the background loop retries: wait (at most 120 s) for the accepted one.
accepted() {
  curl -fsS --max-time 10 "$sim/_sim/submissions" |
    json '"\n".join("%s %s" % (s["tarball_sha256"], s["tarball_size"]) for s in d if s["status"] == 200)'
}
got=""
for _ in $(seq 1 1200); do
  got=$(accepted)
  [ -n "$got" ] && break
  sleep 0.1
done
t1=$(now)
[ -n "$got" ] || die "no accepted submission at the simulator within 120 s"
# A second submission of the same job would be a bug: look again a moment later.
sleep 1
got=$(accepted)
while read -r line; do
  [ "$line" = "$sha $size" ] ||
    die "the simulator received '$line', expected sha256 $sha and $size bytes"
done <<<"$got"
copies=$(printf '%s\n' "$got" | wc -l)
cmp -s "$tarball" "$work/uploads/bench-upload/1.0.0.tar.gz" || die "stored tarball differs"

rss=$(peak_rss_mib)
total_secs=$(echo "$t1 - $t0" | bc -l)
echo
printf 'upload+submit %s MiB tarball: peak RSS %s MiB (goal < 64 MiB)\n' "$mib" "$rss"
printf 'elapsed: upload request %.2f s (answered "%s"), until the hub had it all %.2f s\n' \
  "$upload_secs" "$status" "$total_secs"
if [ "$copies" != 1 ]; then
  echo "bench-upload: WARNING: the hub accepted this one job $copies times (expected once)"
fi
if (($(echo "$rss >= 64" | bc -l))); then
  echo "bench-upload: goal missed: peak RSS $rss MiB >= 64 MiB"
fi
