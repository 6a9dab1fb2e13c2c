#!/usr/bin/env bash
# `make smoke`: starts perry-hub-sim and hone-build (embedded store, temporary
# directories, loopback ports chosen by the system), runs scripts/smoke.sh
# against them, and stops both.   Usage: scripts/smoke-local.sh BIN_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)/scripts
TAG=smoke-local
. scripts/lib.sh
BIN_DIR=${1:-target/debug} hb_bins
hb_workdir
hb_start_sim --callbacks --license-key smoke-license --build-delay-ms 100

secret="smoke-$RANDOM$RANDOM"
hb_start_hone_build HONE_BUILD_UPLOAD_SECRET="$secret" HONE_BUILD_PERRY_HUB_LICENSE_KEY=smoke-license
# PUBLIC_URL follows the bound port ("localhost"), which the simulator reaches.
echo "smoke-local: perry-hub-sim at $sim, hone-build at $base"

if SMOKE_PLATFORMS=macos,linux,windows SMOKE_TIMEOUT=60 bash "$here/smoke.sh" "$base" "$secret"; then
  ls -l "$work/packages"/*/*/
  if grep -q "$secret" "$work/hone-build.log"; then
    echo "smoke-local: FAIL: the upload secret appears in hone-build's log" >&2; exit 1
  fi
else
  echo "--- hone-build log" >&2; tail -n 40 "$work/hone-build.log" >&2
  exit 1
fi
