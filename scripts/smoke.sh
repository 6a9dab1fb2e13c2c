#!/usr/bin/env bash
# Smoke test against a live hone-build: health, a tiny publish, and its builds
# until completed.   Usage: scripts/smoke.sh BASE_URL [UPLOAD_SECRET]
# Environment: SMOKE_TIMEOUT (seconds, default 120), SMOKE_PLATFORMS (default linux).
set -euo pipefail

base=${1:?usage: smoke.sh BASE_URL [UPLOAD_SECRET]}
base=${base%/}
secret=${2:-}
timeout=${SMOKE_TIMEOUT:-120}
platforms=${SMOKE_PLATFORMS:-linux}
fail() { echo "smoke: FAIL: $*" >&2; exit 1; }
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1], ""))' "$1"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. health
health=$(curl -sS --max-time 10 "$base/health") || fail "$base/health does not answer"
[ "$(json_field status <<<"$health")" = ok ] || fail "health is not ok: $health"
echo "smoke: health ok ($(json_field store <<<"$health") store)"

# 2. a generated tiny plugin
name="smoke-plugin"
version="0.0.$(date +%s)-smoke.$$"
mkdir -p "$work/plugin/src"
printf 'export function hello() { return "hone"; }\n' >"$work/plugin/src/index.ts"
printf '{"name":"%s","version":"%s"}\n' "$name" "$version" >"$work/plugin/package.json"
tar -czf "$work/plugin.tar.gz" -C "$work/plugin" .

auth=()
[ -n "$secret" ] && auth=(-H "Authorization: Bearer $secret")
code=$(curl -sS --max-time 120 -o "$work/upload.json" -w '%{http_code}' -X POST "${auth[@]}" \
  --data-binary @"$work/plugin.tar.gz" \
  "$base/upload?name=$name&version=$version&platforms=$platforms&displayName=Smoke+test") \
  || fail "upload request failed"
[ "$code" = 200 ] || fail "upload answered $code: $(cat "$work/upload.json")"
echo "smoke: uploaded $name $version: $(cat "$work/upload.json")"

# 3. poll until completed
deadline=$(( $(date +%s) + timeout ))
while :; do
  status=$(curl -sS --max-time 10 "$base/status/$name/$version") || fail "status request failed"
  overall=$(json_field overall <<<"$status")
  case "$overall" in
    completed) echo "smoke: builds completed: $status"; echo "smoke: PASS"; exit 0 ;;
    failed) fail "a build failed: $status" ;;
  esac
  [ "$(date +%s)" -lt "$deadline" ] || fail "builds not completed after ${timeout}s: $status"
  sleep 1
done
