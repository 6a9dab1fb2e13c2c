#!/usr/bin/env bash
# `make bench-status`: GET /status of hone-build on MySQL next to a stand-in
# of the old TypeScript server's /status, on one MariaDB, with wrk.
#
# 1. Creates a fresh database on the local MariaDB (DB_HOST:DB_PORT, user
#    DB_USER, password DB_PASS; default 127.0.0.1:3306 root, no password),
#    starts perry-hub-sim (calling back with the artifacts) and hone-build
#    on that database (its default configuration unless HONE_BUILD_SETTINGS),
#    publishes one plugin version for five platforms and waits until its
#    /status says "completed": the rows are the ones hone-build writes.
# 2. Starts scripts/bench-status/standin.js: Node, Fastify and a mysql2 pool
#    of 16 running the old server's own query (buildJobs joined with plugins
#    by name and version, ordered by platform; one `pool.execute` per
#    request) and answering the same JSON. Checks that both servers answer
#    the same document.
# 3. Drives each with wrk, one after the other: a warm-up, then the measured
#    run (same threads, connections and duration), and prints req/s, p50 and
#    p99 of each, CPU time per request (server, MariaDB) and the ratio
#    hone-build / stand-in; then the latency of each on one connection.
# 4. Counts the MySQL commands (round trips) each server sends per /status
#    request, through a counting proxy (scripts/bench-status/count-commands.py)
#    in front of MariaDB and a second instance of each server behind it; the
#    figures of step 3 are measured without the proxy.
#
# Usage: scripts/bench-status.sh
# Env:
#   BIN_DIR          take hone-build and perry-hub-sim from there (`make
#                    bench-status` passes the static release build)
#   SECONDS_RUN      measured seconds per server (10)
#   WARMUP_SECONDS   warm-up seconds per server (2)
#   CONNECTIONS      wrk connections (64)
#   THREADS          wrk threads (2)
#   HONE_BUILD_SETTINGS  extra hone-build keys, "KEY=VALUE …" (for
#                    experiments, e.g. "WORKERS=32"); none by default
#   PLATFORMS        published platforms (macos,linux,windows,ios,android)
#   SINGLE_SECONDS   seconds of the one-connection latency run per server (3; 0 skips)
#   COUNT_REQUESTS   requests per server for the round-trip count (2000; 0 skips)
#   DB_HOST, DB_PORT, DB_USER, DB_PASS   the MariaDB/MySQL server
#   KEEP_DB=1        do not drop the database at the end
#   LOG_DIR          copy the servers' logs and wrk's output there
# Needs: node and npm (`npm ci` runs in scripts/bench-status when its
# node_modules is missing), python3, curl, the mysql client, wrk (installed
# with apt-get when missing and running as root).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

seconds=${SECONDS_RUN:-10}
warmup=${WARMUP_SECONDS:-2}
connections=${CONNECTIONS:-64}
threads=${THREADS:-2}
platforms=${PLATFORMS:-macos,linux,windows,ios,android}
count_requests=${COUNT_REQUESTS:-2000}
db_host=${DB_HOST:-127.0.0.1}
db_port=${DB_PORT:-3306}
db_user=${DB_USER:-root}
db_pass=${DB_PASS:-}

TAG=bench-status
. scripts/lib.sh

die() {
  echo "bench-status: $*" >&2
  exit 1
}

# --- tools
for t in node npm python3 curl mysql bc; do
  command -v "$t" >/dev/null || die "needs $t"
done
if ! command -v wrk >/dev/null; then
  [ "$(id -u)" = 0 ] || die "needs wrk (apt-get install wrk)"
  echo "bench-status: installing wrk (apt-get)"
  apt-get install -y -qq wrk >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } ||
    die "could not install wrk"
fi
standin_dir=$root/scripts/bench-status
if [ ! -d "$standin_dir/node_modules" ]; then
  echo "bench-status: npm ci in scripts/bench-status"
  (cd "$standin_dir" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"
fi

hb_bins

sql() {
  MYSQL_PWD="$db_pass" mysql -h "$db_host" -P "$db_port" -u "$db_user" --protocol=TCP -N -B "$@"
}
sql -e 'SELECT 1' >/dev/null || die "MariaDB does not answer on $db_host:$db_port"
db="hone_bench_status_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"

hb_before_remove() {
  if [ -n "${LOG_DIR:-}" ]; then
    mkdir -p "$LOG_DIR" && cp "$work"/*.log "$work"/*.out "$work"/*.err "$work"/wrk-*.txt "$LOG_DIR"/ 2>/dev/null || true
  fi
  if [ -n "${db:-}" ] && [ "${KEEP_DB:-}" != 1 ]; then
    sql -e "DROP DATABASE IF EXISTS \`$db\`" || true
  elif [ -n "${db:-}" ]; then
    echo "bench-status: kept database $db"
  fi
}
hb_workdir
sql -e "CREATE DATABASE \`$db\`"

# --- perry-hub-sim (calling back with the artifacts) and hone-build on MySQL
sim_args=(--build-delay-ms 50)
if "$bin/perry-hub-sim" --help 2>&1 | grep -q -- '--callbacks'; then
  sim_args+=(--callbacks)
fi
hb_start_sim "${sim_args[@]}"

db_env=(HONE_BUILD_DB_HOST="$db_host" HONE_BUILD_DB_PORT="$db_port" HONE_BUILD_DB_USER="$db_user"
  HONE_BUILD_DB_PASS="$db_pass" HONE_BUILD_DB_NAME="$db")
settings=${HONE_BUILD_SETTINGS:-}
for kv in $settings; do db_env+=("HONE_BUILD_$kv"); done
hb_start_hone_build "${db_env[@]}"
echo "bench-status: database $db on $db_host:$db_port; perry-hub-sim $sim (${sim_args[*]})"
echo "bench-status: hone-build $base (pid $hb_pid, $("$bin/hone-build" --version 2>/dev/null || echo '?'), settings: ${settings:-defaults})"

# --- publish one version and wait for its builds
name=bench-status-plugin
version=1.0.0
mkdir -p "$work/plugin/src"
printf 'export function hello() { return "hone"; }\n' >"$work/plugin/src/index.ts"
printf '{"name":"%s","version":"%s"}\n' "$name" "$version" >"$work/plugin/package.json"
tar -czf "$work/plugin.tar.gz" -C "$work/plugin" .
code=$(curl -sS --max-time 60 -o "$work/upload.json" -w '%{http_code}' -X POST \
  --data-binary @"$work/plugin.tar.gz" \
  "$base/upload?name=$name&version=$version&platforms=$platforms") || die "upload request failed"
[ "$code" = 200 ] || die "upload answered $code: $(cat "$work/upload.json")"
path="/status/$name/$version"
overall=""
for _ in $(seq 1 600); do
  overall=$(curl -sS --max-time 10 "$base$path" |
    python3 -c 'import json,sys; print(json.load(sys.stdin).get("overall", ""))') || true
  [ "$overall" = completed ] && break
  [ "$overall" = failed ] && die "a build failed: $(curl -sS "$base$path")"
  sleep 0.1
done
[ "$overall" = completed ] || die "builds not completed after 60 s: $(curl -sS "$base$path")"
rows=$(sql "$db" -e "SELECT COUNT(*) FROM buildJobs")
echo "bench-status: published $name $version for $platforms: $rows buildJobs rows, all completed"

# --- the stand-in on the same database
# start_standin PORT_OF_DB LOG: starts standin.js; sets $standin and $standin_pid.
start_standin() {
  (
    cd "$standin_dir"
    exec env DB_HOST="$db_host" DB_PORT="$1" DB_USER="$db_user" DB_PASS="$db_pass" DB_NAME="$db" \
      POOL=16 PORT=0 NODE_ENV=production node standin.js
  ) >"$2" 2>&1 &
  standin_pid=$!
  pids+=("$standin_pid")
  standin=$(wait_for_line "$2" 'http://127.0.0.1:[0-9]*')
}
start_standin "$db_port" "$work/standin.log"
echo "bench-status: stand-in $standin (pid $standin_pid; node $(node --version), fastify" \
  "$(node -p 'require("'"$standin_dir"'/node_modules/fastify/package.json").version'), mysql2" \
  "$(node -p 'require("'"$standin_dir"'/node_modules/mysql2/package.json").version'), pool 16)"

# Both answer the same document (parsed JSON, so key order does not matter).
curl -fsS "$base$path" >"$work/hb.json" || die "hone-build $path failed"
curl -fsS "$standin$path" >"$work/standin.json" || die "stand-in $path failed"
python3 - "$work/hb.json" "$work/standin.json" <<'EOF' || die "the two answers differ"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
if a != b:
    print("hone-build:", json.dumps(a, sort_keys=True), file=sys.stderr)
    print("stand-in:  ", json.dumps(b, sort_keys=True), file=sys.stderr)
    sys.exit(1)
EOF
echo "bench-status: both answer the same $(wc -c <"$work/hb.json")-byte document for $path"
echo

# --- wrk, one server after the other
# cpu_ticks PID: user + system CPU time of a process (all its threads), in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
tck=$(getconf CLK_TCK)
db_pid=$(pidof mariadbd mysqld 2>/dev/null | awk '{ print $1 }') || true

# run_wrk LABEL URL PID: warm-up, then the measured run; sets rps_LABEL,
# p50_LABEL, p99_LABEL, cpu_LABEL and dbcpu_LABEL (CPU µs per request of the
# server process and of the database server).
run_wrk() {
  local label=$1 url=$2 pid=$3 out=$work/wrk-$1.txt c0 c1 d0 d1 n
  local cmd=(wrk -t "$threads" -c "$connections" -d "${seconds}s" --latency "$url")
  wrk -t "$threads" -c "$connections" -d "${warmup}s" "$url" >/dev/null
  sleep 1 # requests the warm-up left queued drain before the measured run
  echo "bench-status: $label: ${cmd[*]}  (after a ${warmup}s warm-up; load average $(cut -d' ' -f1-3 /proc/loadavg))"
  c0=$(cpu_ticks "$pid")
  d0=$(cpu_ticks "${db_pid:-0}")
  "${cmd[@]}" >"$out"
  c1=$(cpu_ticks "$pid")
  d1=$(cpu_ticks "${db_pid:-0}")
  sed 's/^/    /' "$out"
  if grep -q -E 'Non-2xx|Socket errors' "$out"; then
    echo "bench-status: WARNING: $label had errors (above)"
  fi
  # Only 200 answers count: req/s = (requests - non-2xx) / elapsed.
  local rps p50 p99
  rps=$(awk '/ requests in / { n = $1; t = $4; sub(/s,$/, "", t) }
    /Non-2xx or 3xx responses:/ { bad = $5 }
    END { if (t > 0) printf "%.1f", (n - bad) / t }' "$out")
  p50=$(awk '$1 == "50%" { print $2 }' "$out")
  p99=$(awk '$1 == "99%" { print $2 }' "$out")
  [ -n "$rps" ] && [ -n "$p99" ] || die "could not read wrk's output for $label"
  printf -v "rps_$label" '%s' "$rps"
  printf -v "p50_$label" '%s' "$p50"
  printf -v "p99_$label" '%s' "$p99"
  n=$(awk '/ requests in / { print $1 }' "$out")
  printf -v "cpu_$label" '%.0f' "$(echo "($c1 - $c0) * 1000000 / $tck / $n" | bc -l)"
  printf -v "dbcpu_$label" '%.0f' "$(echo "($d1 - $d0) * 1000000 / $tck / $n" | bc -l)"
}
run_wrk hone_build "$base$path" "$hb_pid"
echo
run_wrk standin "$standin$path" "$standin_pid"
echo

# wrk prints latencies as 1.23ms, 456.00us or 1.02s: in milliseconds.
ms() {
  python3 -c '
import re, sys
m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", sys.argv[1])
print("%.2f" % (float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[m.group(2)]))' "$1"
}
ratio=$(python3 -c "print('%.2f' % ($rps_hone_build / $rps_standin))")
row() { printf '%-42s %9s %8s %8s %12s %12s\n' "$@"; }
row "GET $path" "req/s" "p50 ms" "p99 ms" "CPU us/req" "DB CPU us/req"
row "hone-build (Rust, mysql crate)" "$(printf %.0f "$rps_hone_build")" "$(ms "$p50_hone_build")" \
  "$(ms "$p99_hone_build")" "$cpu_hone_build" "$dbcpu_hone_build"
row "stand-in (Node, Fastify, mysql2, pool 16)" "$(printf %.0f "$rps_standin")" "$(ms "$p50_standin")" \
  "$(ms "$p99_standin")" "$cpu_standin" "$dbcpu_standin"
echo "ratio hone-build / stand-in: ${ratio}x   (goal: >= 2x, hone-build p99 < 5 ms)"
echo "(wrk -t $threads -c $connections, ${seconds}s each after ${warmup}s warm-up, one after the other;" \
  "$(nproc) cores shared by wrk, the server and MariaDB; DB CPU is the whole mariadbd process, other clients included)"

# One keep-alive connection, nothing queued: the time of one request (a
# response held back by Nagle's algorithm until the client's delayed ACK
# shows here as ~40 ms).
if [ "${SINGLE_SECONDS:-3}" != 0 ]; then
  echo
  echo "bench-status: one connection (wrk -t 1 -c 1 -d ${SINGLE_SECONDS:-3}s --latency), the latency of a lone request:"
  for s in "hone-build $base" "stand-in $standin"; do
    set -- $s
    wrk -t 1 -c 1 -d "${SINGLE_SECONDS:-3}s" --latency "$2$path" >"$work/wrk-single-$1.txt"
    awk -v who="$1" '$1 == "50%" { p50 = $2 } $1 == "99%" { p99 = $2 } /^Requests\/sec:/ { rps = $2 }
      END { printf "  %-11s p50 %s, p99 %s, %.0f req/s\n", who ":", p50, p99, rps }' "$work/wrk-single-$1.txt"
  done
fi

# --- MySQL commands per request, through a counting proxy
if [ "$count_requests" != 0 ]; then
  echo
  # start_proxy LABEL: a counting proxy in front of MariaDB; sets $proxy_port, proxy_pid_LABEL.
  start_proxy() {
    python3 -u "$standin_dir/count-commands.py" "$db_host" "$db_port" >"$work/proxy-$1.out" 2>"$work/proxy-$1.err" &
    pids+=($!)
    printf -v "proxy_pid_$1" '%s' "$!"
    proxy_port=$(wait_for_line "$work/proxy-$1.out" 'listening on [0-9]*' | awk '{ print $3 }')
  }
  # Second instances of both servers, each with its own proxy in front of the
  # database (the first ones, still running and idle, do not go through it).
  mv "$work/hone-build.log" "$work/hone-build-first.log"
  start_proxy hone_build
  hb_start_hone_build "${db_env[@]}" HONE_BUILD_DB_PORT="$proxy_port"
  start_proxy standin
  start_standin "$proxy_port" "$work/standin-counted.log"

  # get_n URL N: N GET requests over 8 keep-alive connections; all must be 200.
  get_n() {
    python3 - "$1" "$2" <<'EOF'
import http.client, sys, threading, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1]); n = int(sys.argv[2]); k = 8
bad = []
def run(count):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    for _ in range(count):
        c.request("GET", u.path); r = c.getresponse(); r.read()
        if r.status != 200: bad.append(r.status)
ts = [threading.Thread(target=run, args=(n // k + (i < n % k),)) for i in range(k)]
[t.start() for t in ts]; [t.join() for t in ts]
if bad: sys.exit("%d answers were not 200: %s" % (len(bad), sorted(set(bad))))
EOF
  }
  # snapshot LABEL: the proxy's counts since its previous snapshot (one JSON line).
  snapshot() {
    local out=$work/proxy-$1.out pid_var=proxy_pid_$1 before
    before=$(wc -l <"$out")
    kill -USR1 "${!pid_var}"
    for _ in $(seq 1 100); do
      [ "$(wc -l <"$out")" -gt "$before" ] && break
      sleep 0.05
    done
    tail -n 1 "$out"
  }
  # count LABEL NAME URL: commands per request, the idle (background) rate subtracted.
  count() {
    local idle busy
    get_n "$3" 200 # warm: connections open, statements prepared
    snapshot "$1" >/dev/null
    sleep 2
    idle=$(snapshot "$1")
    get_n "$3" "$count_requests"
    busy=$(snapshot "$1")
    python3 - "$2" "$count_requests" "$idle" "$busy" <<'EOF'
import json, sys
label, n, idle, busy = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
rate = {k: v / idle["seconds"] for k, v in idle["commands"].items()}
names = sorted(set(busy["commands"]) | set(rate))
raw = sum(busy["commands"].values()) / n
per = {k: (busy["commands"].get(k, 0) - rate.get(k, 0) * busy["seconds"]) / n for k in names}
total = sum(per.values())
parts = ", ".join("%s %.2f" % (k, v) for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if abs(v) >= 0.005)
idle_s = ", ".join("%s %.1f/s" % (k, v) for k, v in sorted(rate.items())) or "none"
print("  %-11s %.2f per request (%s)" % (label + ":", total, parts or "none"))
print("  %-11s raw %.2f per request over %.1f s, %d new connection(s); idle background: %s"
      % ("", raw, busy["seconds"], busy["connections"], idle_s))
EOF
  }
  echo "bench-status: MySQL commands (one round trip each) per GET $path, counted by a proxy over" \
    "$count_requests requests (8 keep-alive connections) after 200 warm-up requests, minus the idle rate:"
  count hone_build hone-build "$base$path"
  count standin stand-in "$standin$path"
fi
