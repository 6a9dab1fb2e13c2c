#!/usr/bin/env bash
# `make bench`: intake speed and memory of POST /artifact/:callbackId.
#
# Starts perry-hub-sim (never_callback: the benchmark posts the artifacts
# itself) and a release hone-build on the embedded store in temporary
# directories. For each artifact size it uploads a tiny plugin version for
# one platform, takes the job's callback URL from the simulator, and POSTs a
# random artifact base64-encoded (Content-Type text/plain, x-artifact-sha256)
# the way Perry's worker does. It compares the intake time with the time
# `sha256sum` needs for the decoded bytes alone (goal: ratio >= 0.5, i.e.
# intake at most twice as slow as just hashing), and reads hone-build's peak
# RSS (VmHWM) after each size (goal: < 64 MiB: the body is streamed).
#
# Usage: scripts/bench-artifact.sh [SIZE_MIB ...]   (default 16 64 256)
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(16 64 256)

TAG=bench-artifact
. scripts/lib.sh
hb_bins
hb_workdir

now() { date +%s.%N; }

hb_start_sim --callbacks
curl -fsS -X POST -H 'Content-Type: application/json' -d '{"never_callback":true}' \
  "$sim/_sim/config" >/dev/null

# The largest base64 body (256 MiB decoded is 342 MiB encoded) is over the
# default MAX_BODY_BYTES (200 MiB): raise the limit for the benchmark.
max_mib=$(printf '%s\n' "${sizes[@]}" | sort -n | tail -n1)
max_body=$(((max_mib * 4 / 3 + 16) * 1024 * 1024))
hb_start_hone_build HONE_BUILD_MAX_BODY_BYTES="$max_body"

hb_tiny_plugin

peak_rss_mib() {
  awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$hb_pid/status"
}

echo "bench-artifact: hone-build $base (pid $hb_pid), perry-hub-sim $sim, MAX_BODY_BYTES=$max_body"
echo "bench-artifact: peak RSS after start-up: $(peak_rss_mib) MiB"
echo
printf '%-10s %12s %15s %26s %15s\n' "size" "intake (s)" "sha256sum (s)" "ratio sha256sum/intake" "peak RSS (MiB)"
fail=0
for mib in "${sizes[@]}"; do
  version="1.0.$mib"
  hb_upload bench-plugin "$version" linux
  # The callback URL of the newest submission, reached on 127.0.0.1.
  url=$(curl -fsS "$sim/_sim/submissions" |
    jq -r --arg v "$version" '[.[] | select(.status == 200 and .manifest.version == $v)][-1].artifact_upload_url')
  url="${url/localhost/127.0.0.1}"

  head -c $((mib * 1024 * 1024)) /dev/urandom >"$work/artifact.bin"
  base64 -w0 "$work/artifact.bin" >"$work/artifact.b64"
  sync

  t0=$(now)
  sha=$(sha256sum "$work/artifact.bin" | cut -d' ' -f1)
  t1=$(now)
  sha_secs=$(echo "$t1 - $t0" | bc -l)

  # -T streams the file (with Content-Length); no "Expect: 100-continue".
  out=$(curl -sS -o "$work/resp.json" -w '%{http_code} %{time_total}' -X POST -T "$work/artifact.b64" \
    -H 'Expect:' -H 'Content-Type: text/plain' -H "x-artifact-sha256: $sha" \
    -H "x-artifact-name: bench-plugin-$version-linux.bin" -H 'x-artifact-target: linux' "$url")
  code=${out%% *}
  intake=${out#* }
  if [ "$code" != 200 ] || [ "$(jq -r .sha256 "$work/resp.json")" != "$sha" ]; then
    echo "bench-artifact: artifact of $mib MiB answered $code: $(cat "$work/resp.json")" >&2
    exit 1
  fi
  stored="$work/packages/bench-plugin/$version/linux-x64.bin"
  cmp -s "$stored" "$work/artifact.bin" || {
    echo "bench-artifact: stored file differs" >&2
    exit 1
  }
  rss=$(peak_rss_mib)
  ratio=$(echo "$sha_secs / $intake" | bc -l)
  printf '%-10s %12.3f %15.3f %26.2f %15s\n' "$mib MiB" "$intake" "$sha_secs" "$ratio" "$rss"
  if (($(echo "$ratio < 0.5" | bc -l))) || (($(echo "$rss >= 64" | bc -l))); then fail=1; fi
  rm -f "$work/artifact.bin" "$work/artifact.b64" "$stored"
done
echo
echo "goals: ratio >= 0.5 (intake at most 2x the time of sha256sum alone), peak RSS < 64 MiB"
if [ "$fail" != 0 ]; then
  echo "bench-artifact: a goal was missed (see above)"
fi
