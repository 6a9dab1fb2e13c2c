#!/usr/bin/env bash
# `make smoke`: starts perry-hub-sim as today's Perry Hub (no callbacks: the
# builds are followed over its WebSocket and their packages downloaded) and
# hone-build (embedded store, temporary directories, loopback ports chosen by
# the system), publishes for all five platforms with scripts/smoke.sh, checks
# each stored program against the one the simulator built, and stops both.
# Usage: scripts/smoke-local.sh BIN_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)/scripts
TAG=smoke-local
. scripts/lib.sh
BIN_DIR=${1:-target/debug} hb_bins
hb_workdir
hb_start_sim --license-key smoke-license --build-delay-ms 100

secret="smoke-$RANDOM$RANDOM"
hb_start_hone_build HONE_BUILD_UPLOAD_SECRET="$secret" HONE_BUILD_PERRY_HUB_LICENSE_KEY=smoke-license
echo "smoke-local: perry-hub-sim at $sim ($sim_ws), hone-build at $base"

if SMOKE_PLATFORMS=macos,linux,windows,ios,android SMOKE_TIMEOUT=60 bash "$here/smoke.sh" "$base" "$secret"; then
  ls -l "$work/packages"/*/*/
  # Each stored .bin is exactly the program the simulator put in its package.
  curl -sS "$sim/_sim/jobs" >"$work/jobs.json"
  python3 - "$work/jobs.json" "$work/packages" <<'PY'
import hashlib, json, pathlib, sys
jobs = json.load(open(sys.argv[1]))
ids = {"macos": "darwin-arm64", "linux": "linux-x64", "windows": "windows-x64",
       "ios": "ios-arm64", "android": "android-arm64"}
want = {}
for j in jobs:
    for a in j["artifacts"]:
        if a.get("program_sha256") and a.get("downloads"):
            want[ids[j["targets"][0]]] = a["program_sha256"]
bins = {p.stem: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in pathlib.Path(sys.argv[2]).glob("*/*/*.bin")}
if bins != want or len(bins) != 5:
    sys.exit(f"smoke-local: FAIL: stored programs {bins} differ from the built ones {want}")
print(f"smoke-local: the 5 stored programs are exactly the ones built")
PY
  if grep -q "$secret" "$work/hone-build.log"; then
    echo "smoke-local: FAIL: the upload secret appears in hone-build's log" >&2; exit 1
  fi
else
  echo "--- hone-build log" >&2; tail -n 40 "$work/hone-build.log" >&2
  exit 1
fi
