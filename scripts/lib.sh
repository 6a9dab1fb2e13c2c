# Shared by the benchmark and smoke scripts (sourced, not run). A script
# sets TAG (its name, for messages and the work directory) first.

# hb_bins [CARGO ARGS…]: $bin, the directory holding hone-build and
# perry-hub-sim: BIN_DIR when given (`make bench` passes the static release
# build), else a release build made here.
hb_bins() {
  if [ -n "${BIN_DIR:-}" ]; then
    bin=$(cd "$BIN_DIR" && pwd)
  else
    cargo build --release --bins --quiet "$@"
    bin=$(pwd)/target/release
  fi
}

# hb_workdir: $work, a temporary directory, and $pids, processes to stop;
# both are cleaned up on exit (a script may define hb_before_remove to save
# something from $work first).
hb_workdir() {
  work=$(mktemp -d "${TMPDIR:-/tmp}/hone-$TAG.XXXXXX")
  pids=()
  trap hb_cleanup EXIT
  trap 'exit 130' INT TERM
}

hb_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if declare -F hb_before_remove >/dev/null; then hb_before_remove; fi
  rm -rf "$work"
}

# wait_for_line FILE PATTERN: prints the first match of PATTERN in FILE,
# waiting up to 10 s for it.
wait_for_line() {
  for _ in $(seq 1 100); do
    grep -o "$2" "$1" 2>/dev/null | head -n1 && return 0
    sleep 0.1
  done
  echo "$TAG: no '$2' in $1:" >&2
  cat "$1" >&2
  return 1
}

# hb_start_sim [ARGS…]: starts perry-hub-sim on free loopback ports; $sim
# is its base URL, $sim_ws its WebSocket URL.
hb_start_sim() {
  "$bin/perry-hub-sim" --port 0 "$@" >"$work/sim.out" 2>"$work/sim.err" &
  pids+=($!)
  sim=$(wait_for_line "$work/sim.out" 'http://127.0.0.1:[0-9]*')
  sim_ws=$(wait_for_line "$work/sim.out" 'ws://127.0.0.1:[0-9]*/ws')
}

# hb_start_hone_build [HONE_BUILD_KEY=VALUE…]: starts hone-build in $work
# with a clean environment: a free loopback port, the embedded store and
# directories in $work, perry-hub-sim at $sim and $sim_ws (license key
# sim-license unless overridden), LOG_LEVEL=info; the arguments add or
# override keys. Sets
# $base (its URL) and $hb_pid; its log is $work/hone-build.log.
hb_start_hone_build() {
  (
    cd "$work"
    exec env -i PATH="$PATH" HOME="${HOME:-/tmp}" \
      HONE_BUILD_PORT=0 HONE_BUILD_BIND=127.0.0.1 HONE_BUILD_LOG_LEVEL=info \
      HONE_BUILD_PERRY_HUB_URL="$sim" HONE_BUILD_PERRY_HUB_WS_URL="$sim_ws" \
      HONE_BUILD_PERRY_HUB_LICENSE_KEY=sim-license \
      HONE_BUILD_DATA_DIR="$work/data" HONE_BUILD_UPLOADS_DIR="$work/uploads" \
      HONE_BUILD_PACKAGES_DIR="$work/packages" \
      "$@" "$bin/hone-build"
  ) 2>"$work/hone-build.log" &
  hb_pid=$!
  pids+=("$hb_pid")
  base=$(wait_for_line "$work/hone-build.log" 'http://127.0.0.1:[0-9]*')
}

# hb_tiny_plugin: $work/plugin.tar.gz, the source tarball of a tiny plugin.
hb_tiny_plugin() {
  mkdir -p "$work/plugin/src"
  echo 'export default {}' >"$work/plugin/src/index.ts"
  tar -C "$work/plugin" -czf "$work/plugin.tar.gz" src
}

# hb_upload NAME VERSION PLATFORMS: publishes $work/plugin.tar.gz on
# $base; the script exits unless it is answered 200.
hb_upload() {
  local code
  code=$(curl -sS -o "$work/upload.json" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/gzip' --data-binary @"$work/plugin.tar.gz" \
    "$base/upload?name=$1&version=$2&platforms=$3")
  if [ "$code" != 200 ]; then
    echo "$TAG: upload $1 $2 answered $code: $(cat "$work/upload.json")" >&2
    exit 1
  fi
}

# hb_overall NAME VERSION: prints the version's `overall` from /status.
hb_overall() {
  curl -sS "$base/status/$1/$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["overall"])'
}
