#!/usr/bin/env bash
# `make demo`: a build from upload to stored program, on this machine, in
# well under a minute. Starts perry-hub-sim as today's Perry Hub (builds
# followed over its WebSocket, stages and progress played with visible
# delays) and hone-build (embedded SQLite store, files in a temporary
# directory, loopback ports chosen by the system, so nothing collides with a
# running instance), publishes a generated sample plugin for every
# platform, prints the build page's URL and the live /status until every
# platform completed, then keeps both running until Ctrl-C and stops them
# (the temporary directory is removed).
#
# Usage: scripts/demo.sh            (BIN_DIR: where hone-build and perry-hub-sim
#                                    are; `make demo` passes its release build)
# Environment:
#   DEMO_EXIT_WHEN_DONE=1    stop and exit once every platform completed
#   DEMO_PLATFORMS           default macos,linux,windows,ios,android
#   DEMO_STAGE_DELAY_MS      the simulated hub's pause before each build stage (default 800)
#   DEMO_BUILD_DELAY_MS      how long a build waits in the hub's queue (default 1000)
#   DEMO_TIMEOUT             seconds to wait for the builds (default 120)
# Needs curl and python3 (to show /status).
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=demo
. scripts/lib.sh

platforms=${DEMO_PLATFORMS:-macos,linux,windows,ios,android}
stage_delay=${DEMO_STAGE_DELAY_MS:-800}
build_delay=${DEMO_BUILD_DELAY_MS:-1000}
timeout=${DEMO_TIMEOUT:-120}
name=hello-hone
version=1.0.0

say() { echo "demo: $*"; }
die() { echo "demo: FAILED: $*" >&2; exit 1; }
for tool in curl python3 tar; do
  command -v "$tool" >/dev/null || die "$tool is needed (apt-get install $tool)"
done

hb_bins
work=$(mktemp -d "${TMPDIR:-/tmp}/hone-demo.XXXXXX")
pids=()
stopped=0
# Stops what was started (hone-build first: it drains, then the hub) and
# removes the temporary directory. Runs once, on any exit.
demo_stop() {
  local rc=$?
  [ "$stopped" = 1 ] && return
  stopped=1
  trap '' INT TERM
  if [ "${#pids[@]}" -gt 0 ]; then
    say "stopping hone-build and perry-hub-sim"
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    # hone-build drains for at most SHUTDOWN_GRACE_SECS (10 s) after SIGTERM.
    for _ in $(seq 1 150); do
      alive=0
      for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      [ "$alive" = 0 ] && break
      sleep 0.1
    done
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
  fi
  if [ "$rc" != 0 ] && [ "$rc" != 130 ] && [ -f "$work/hone-build.log" ]; then
    echo "--- hone-build log (last 30 lines)" >&2
    tail -n 30 "$work/hone-build.log" >&2
  fi
  rm -rf "$work"
  say "stopped; removed $work"
}
trap demo_stop EXIT
# Ctrl-C: a normal end of the demo. (It reaches only this script: the two
# services run in process groups of their own, so each gets one SIGTERM.)
trap 'exit 130' INT TERM

# Each service in a process group of its own (job control on while they
# start): the terminal's Ctrl-C must not reach them beside our SIGTERM (a
# second signal makes hone-build exit at once, without draining).
set -m
# A Perry account token the simulated hub accepts; hone-build sends it as
# Authorization: Bearer, as with the real hub (PERRY_HUB_TOKEN).
hub_token="demo-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
hb_start_sim --account "$hub_token" --build-delay-ms "$build_delay" --stage-delay-ms "$stage_delay"
sim_pid=${pids[-1]}
# The upload secret stays in files of the temporary directory (mode 0600):
# not on a command line, not printed.
umask 077
upload_secret=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
printf 'Authorization: Bearer %s\n' "$upload_secret" >"$work/upload-auth-header"
hb_start_hone_build HONE_BUILD_UPLOAD_SECRET="$upload_secret" \
  HONE_BUILD_PERRY_HUB_TOKEN="$hub_token" HONE_BUILD_PERRY_HUB_LICENSE_KEY= \
  HONE_BUILD_PLATFORMS="$platforms"
set +m
umask 022
say "perry-hub-sim (today's Perry Hub: builds followed over its WebSocket) at $sim, $sim_ws, pid $sim_pid"
say "hone-build at $base, pid $hb_pid (embedded SQLite store; files in $work)"

# A sample plugin: its entry file src/index.ts and a package.json.
mkdir -p "$work/plugin/src"
cat >"$work/plugin/src/index.ts" <<'TS'
// hello-hone: the sample plugin of hone-build's `make demo`.
export function activate(): string {
  return "Hello from Hone!";
}
TS
printf '{"name":"%s","version":"%s","main":"src/index.ts"}\n' "$name" "$version" >"$work/plugin/package.json"
tar -czf "$work/plugin.tar.gz" -C "$work/plugin" .

say "publishing $name $version for $platforms"
start=$(date +%s%N)
elapsed() { local t; t=$(( ($(date +%s%N) - start) / 100000000 )); echo "$((t / 10)).$((t % 10))s"; }
code=$(curl -sS --max-time 60 -o "$work/upload.json" -w '%{http_code}' -X POST \
  -H @"$work/upload-auth-header" --data-binary @"$work/plugin.tar.gz" \
  "$base/upload?name=$name&version=$version&platforms=$platforms&displayName=Hello+Hone") \
  || die "the upload request failed"
[ "$code" = 200 ] || die "the upload answered $code: $(cat "$work/upload.json")"
# The build page: the upload's buildUrl when it names one, else PUBLIC_URL's
# form of it on the address hone-build listens on.
build_page=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("buildUrl") or "")' "$work/upload.json")
[ -n "$build_page" ] || build_page="$base/builds/$name/$version"
say "build page: $build_page"
say "live status: $base/status/$name/$version"

# One line per platform: status, stage, progress, the hub's last words.
# Exit status 0: still building, 10: every platform completed, 11: one failed.
show_status='
import json, sys
s = json.load(sys.stdin)
for b in s["builds"]:
    status = b["status"]
    if status == "completed":
        detail = "%s bytes, sha256 %s" % (b.get("size", "?"), (b.get("sha256") or "?")[:12])
    elif status == "failed":
        detail = b.get("errorMessage", "")
    elif status == "pending":
        detail = "waiting to be submitted (attempt %s) %s" % (b.get("attempts", 0), b.get("lastError", ""))
    else:
        stage = b.get("stage") or ("in the hub queue" if b.get("hubJobId") else "")
        if b.get("queuePosition") is not None and not b.get("stage"):
            stage = "queue position %s" % b["queuePosition"]
        pct = "%3s%%" % b["progress"] if b.get("progress") is not None else "    "
        detail = "%-16s %s  %s" % (stage, pct, b.get("message") or "")
    print("  %-8s %-10s %s" % (b["platform"], status, detail.strip()[:72]))
sys.exit({"completed": 10, "failed": 11}.get(s.get("overall"), 0))
'
deadline=$(( $(date +%s) + timeout ))
tty=0; [ -t 1 ] && tty=1
previous=""
shown_lines=0
while :; do
  set +e
  lines=$(curl -sS --max-time 10 "$base/status/$name/$version" | python3 -c "$show_status")
  state=$?
  set -e
  if [ "$lines" != "$previous" ] || [ "$state" != 0 ]; then
    if [ "$tty" = 1 ]; then
      # On a terminal the block is redrawn in place (cursor up, clear lines).
      [ "$shown_lines" -gt 0 ] && printf '\033[%dA' "$shown_lines"
      printf '%s\033[K\n' "status after $(elapsed):"
      printf '%s\n' "$lines" | sed $'s/$/\033[K/'
      shown_lines=$(( $(printf '%s\n' "$lines" | wc -l) + 1 ))
    else
      printf 'status after %s:\n%s\n' "$(elapsed)" "$lines"
    fi
    previous=$lines
  fi
  case "$state" in
    10) break ;;
    11) die "a build failed (see above)" ;;
    0) ;;
    *) die "cannot read $base/status/$name/$version" ;;
  esac
  [ "$(date +%s)" -lt "$deadline" ] || die "the builds did not complete within ${timeout}s"
  sleep 0.3
done
say "every platform completed, $(elapsed) after the upload; the programs are in $work/packages/$name/$version/"

if [ "${DEMO_EXIT_WHEN_DONE:-0}" = 1 ]; then
  exit 0
fi
cat <<EOF
demo: hone-build and perry-hub-sim keep running. Try:
  curl $base/status/$name/$version
  curl $base/metrics
  ls -l $work/packages/$name/$version/
  (the upload secret is in $work/upload-auth-header, as an HTTP header)
demo: press Ctrl-C to stop both and remove $work
EOF
while kill -0 "$hb_pid" 2>/dev/null && kill -0 "$sim_pid" 2>/dev/null; do
  sleep 1
done
die "a service stopped by itself"
