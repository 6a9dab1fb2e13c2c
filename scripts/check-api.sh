#!/usr/bin/env bash
# `make check-api`: checks the running service against docs/openapi.yaml
# with schemathesis (every check, ≥ 1000 generated cases). Starts
# perry-hub-sim as today's Perry Hub and hone-build (embedded store,
# temporary directories, loopback ports chosen by the system, an upload
# secret given to schemathesis), runs schemathesis against GET /openapi.json
# and fails on any server error or any answer the description does not
# allow. Installs schemathesis (pinned) into a virtual environment first.
# Usage: scripts/check-api.sh BIN_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=check-api
. scripts/lib.sh

SCHEMATHESIS_VERSION=4.32.5
VENV=${VENV:-target/venv}
# Cases per operation and phase, and the time budget: fuzzing and stateful
# testing repeat until it is spent. How many cases a pass generates varies
# (the stateful phase follows the service's answers), so the budget, not
# the count, bounds the run; it fails below MIN_CASES.
MAX_EXAMPLES=${MAX_EXAMPLES:-150}
MAX_TIME=${MAX_TIME:-120}
MIN_CASES=${MIN_CASES:-1000}

st="$VENV/bin/schemathesis"
if ! { [ -x "$st" ] && "$st" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; }; then
  echo "$TAG: installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

BIN_DIR=${1:-target/debug} hb_bins
hb_workdir
hb_start_sim --build-delay-ms 100
secret="check-api-$RANDOM$RANDOM$RANDOM"
hb_start_hone_build HONE_BUILD_UPLOAD_SECRET="$secret"
echo "$TAG: perry-hub-sim at $sim, hone-build at $base, schemathesis $SCHEMATHESIS_VERSION"

# A job to deliver to: one upload, its job id and callback token (from the
# embedded store, where only hone-build and this script can read it).
python3 - "$work/seed.tar.gz" <<'PY'
import gzip, io, sys, tarfile
buf, data = io.BytesIO(), b"export function activate() {}\n"
with tarfile.open(fileobj=buf, mode="w") as t:
    info = tarfile.TarInfo("src/index.ts"); info.size = len(data)
    t.addfile(info, io.BytesIO(data))
open(sys.argv[1], "wb").write(gzip.compress(buf.getvalue()))
PY
code=$(curl -sS -o "$work/seed.json" -w '%{http_code}' -H "Authorization: Bearer $secret" \
  --data-binary @"$work/seed.tar.gz" "$base/upload?name=check-api-seed&version=1.0.0&platforms=linux")
[ "$code" = 200 ] || { echo "$TAG: seed upload answered $code: $(cat "$work/seed.json")" >&2; exit 1; }
read -r job job_token < <(python3 - "$work/data/hone-build.sqlite3" <<'PY'
import sqlite3, sys
row = sqlite3.connect(sys.argv[1]).execute(
    "SELECT id, callbackToken FROM buildJobs WHERE callbackToken IS NOT NULL ORDER BY id LIMIT 1").fetchone()
print(row[0], row[1])
PY
)

# schemathesis leaves out the operation that served the description unless
# a filter selects it: `--include-path-regex '^/'` selects every operation.
report=target/check-api
set +e
# The secret and the job's token go through the environment (the
# configuration file's [auth] tables read them), not the command line.
HYPOTHESIS_STORAGE_DIRECTORY=target/hypothesis \
HONE_CHECK_API_SECRET="$secret" HONE_CHECK_API_JOB="$job" HONE_CHECK_API_JOB_TOKEN="$job_token" \
"$st" --config-file scripts/schemathesis.toml run "$base/openapi.json" \
  --include-path-regex '^/' \
  --checks all --max-examples "$MAX_EXAMPLES" --max-time "$MAX_TIME" --seed "${SEED:-20261129}" \
  --report junit --report-dir "$report" \
  2>&1 | tee "$work/schemathesis.out"
rc=${PIPESTATUS[0]}
set -e
cases=$(sed -n 's/^ *\([0-9][0-9]*\) generated.*/\1/p' "$work/schemathesis.out" | tail -n1)
echo "$TAG: schemathesis generated ${cases:-no} test cases (at least $MIN_CASES wanted); report in $report"
if [ "$rc" = 0 ] && [ "${cases:-0}" -lt "$MIN_CASES" ]; then
  echo "$TAG: FAIL: fewer than $MIN_CASES cases" >&2; exit 1
fi
# What the run asked of the build logs and pages, from hone-build's access
# lines (`<client> <METHOD> <target> <status> <bytes> <ms>ms`): answers by
# status, and the followed logs (`follow=1`, `true`, `yes`) that streamed
# (200) with the longest one's time. A followed log must have been
# exercised: a run that never streamed one did not check that path.
summary=$(awk '
  / (GET|HEAD) \/(logs|builds)\// {
    for (i = 1; i < NF; i++) if ($i == "GET" || $i == "HEAD") break
    split($(i + 1), p, "/"); r = p[2]; st = $(i + 2); ms = $(i + 4); sub(/ms$/, "", ms)
    n[r]++; by[r " " st]++
    if (r == "logs" && st == 200 && $(i + 1) ~ /[?&;]follow=(1|true|yes)(&|;|$)/) {
      f++; if (ms + 0 > fmax) fmax = ms + 0
    }
  }
  END {
    for (r in n) { line = "GET /" r ": " n[r] " answers ("; sep = ""
      for (k in by) { split(k, a, " "); if (a[1] == r) { line = line sep a[2] ": " by[k]; sep = ", " } }
      print line ")" }
    printf "followed logs streamed: %d (longest %d ms)\n", f, fmax
  }' "$work/hone-build.log")
echo "$summary" | sed "s/^/$TAG: /"
if [ "$rc" = 0 ] && echo "$summary" | grep -q '^followed logs streamed: 0 '; then
  echo "$TAG: FAIL: no followed log (GET /logs/...?follow=1) was streamed" >&2; exit 1
fi
if grep -qF -e "$secret" -e "$job_token" "$work/schemathesis.out" "$work/hone-build.log"; then
  echo "$TAG: FAIL: a secret appears in schemathesis' output or hone-build's log" >&2; exit 1
fi
if grep -qE "panicked|thread .* panicked" "$work/hone-build.log"; then
  echo "$TAG: FAIL: hone-build panicked:" >&2; grep -B2 -A5 panicked "$work/hone-build.log" >&2; exit 1
fi
exit "$rc"
