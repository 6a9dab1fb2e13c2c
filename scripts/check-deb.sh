#!/usr/bin/env bash
# `make check-deb`: checks the Debian package on this machine. Needs root.
# In order: the archive's contents; lintian (installed with apt-get when
# missing); dpkg -i and the files, the user, owners and modes; the unit
# (systemd-analyze verify, and security with a ceiling on the exposure);
# `hone-build check-config` and the service itself run as the hone-build
# user; the unit run by a real systemd in private namespaces, with a publish
# through it; an upgrade keeping a local change of the conffile; dpkg -r and
# dpkg -P (what stays, what goes). Leaves the machine as it found it: the
# package purged, the hone-build user deleted if this script created it.
# Usage: scripts/check-deb.sh PATH/hone-build_VERSION_ARCH.deb
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=check-deb
. scripts/lib.sh

# The unit's `systemd-analyze security` exposure (0.0 best, 10.0 worst), in
# tenths: the check fails above it. 1.3 when this was written (6.5 before
# the unit was hardened); docs/operations.md, "The systemd unit".
EXPOSURE_MAX_TENTHS=13

deb=${1:?usage: scripts/check-deb.sh PATH/hone-build_VERSION_ARCH.deb}
deb=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")
[ "$(id -u)" = 0 ] || { echo "check-deb: needs root (it installs the package with dpkg)" >&2; exit 1; }
if dpkg-query -W -f='${db:Status-Status}' hone-build 2>/dev/null | grep -qv '^not-installed$'; then
  echo "check-deb: the hone-build package is already on this machine; remove it first (dpkg -P hone-build)" >&2
  exit 1
fi
for d in /etc/hone-build /var/lib/hone-build; do
  [ ! -e "$d" ] || { echo "check-deb: $d exists (left by an earlier installation?): remove it first" >&2; exit 1; }
done
# step: what is being done; ok: a check that passed; fail: one that did not.
# The last line counts them ("check-deb: N passed, M failed").
passed=0
step() { echo "check-deb: $*"; }
ok() { passed=$((passed + 1)); echo "check-deb: ok: $*"; }
fail() { echo "check-deb: FAIL: $*" >&2; echo "check-deb: $passed passed, 1 failed"; exit 1; }
# perry-hub-sim of `make build` (the static release build the package has).
bin=$(pwd)/target/$(rustc -vV | sed -n 's/^host: //p')/release
[ -x "$bin/perry-hub-sim" ] || { echo "check-deb: no $bin/perry-hub-sim: run make build" >&2; exit 1; }

user_existed=no
getent passwd hone-build >/dev/null && user_existed=yes
hb_workdir
chmod 755 "$work"
# The systemd of the "Under systemd" part ignores SIGTERM (and unshare, its
# parent, too): it is killed, with everything in its namespace, before
# hb_cleanup waits for this script's children.
unshare_pid=
stop_namespace() {
  if [ -n "$unshare_pid" ]; then
    for c in $(pgrep -P "$unshare_pid"); do kill -KILL "$c" 2>/dev/null || true; done
    kill -KILL "$unshare_pid" 2>/dev/null || true
    wait "$unshare_pid" 2>/dev/null || true
  fi
}
trap 'stop_namespace; hb_cleanup' EXIT
hb_before_remove() {
  if dpkg-query -W -f='${db:Status-Status}' hone-build 2>/dev/null | grep -qv '^not-installed$'; then
    dpkg -P hone-build >/dev/null 2>&1 || true
  fi
  if [ "$user_existed" = no ] && getent passwd hone-build >/dev/null; then
    userdel hone-build || echo "check-deb: could not delete the user hone-build it created" >&2
    if getent group hone-build >/dev/null; then groupdel hone-build || true; fi
  fi
  rm -rf /var/lib/hone-build  # absent before this script (checked above)
}

# --- The archive ------------------------------------------------------------
step "$(basename "$deb"), $(stat -c %s "$deb") bytes"
dpkg-deb -c "$deb" | tee "$work/contents"
for f in ./usr/bin/hone-build ./etc/hone-build/build.conf \
         ./usr/lib/systemd/system/hone-build.service \
         ./usr/share/doc/hone-build/README.md ./usr/share/doc/hone-build/copyright \
         ./usr/share/doc/hone-build/build.conf.example \
         ./usr/share/doc/hone-build/docs/operations.md \
         ./usr/share/doc/hone-build/changelog.gz; do
  grep -q " $f\$" "$work/contents" || fail "the package lacks $f"
done
# Shipped 0644 with no secret in it; postinst's stat override makes it 0640.
grep ' ./etc/hone-build/build.conf$' "$work/contents" | grep -Eq '^-rw-r--r-- (root/root|0/0) ' ||
  fail "build.conf is not 0644 root:root in the archive"
if grep -Eq '^(DB_PASS|UPLOAD_SECRET|PERRY_HUB_TOKEN|PERRY_HUB_LICENSE_KEY)=.' <(dpkg-deb --fsys-tarfile "$deb" | tar -xOf - ./etc/hone-build/build.conf); then
  fail "the packaged build.conf sets a secret"
fi
dpkg-deb -I "$deb" conffiles | grep -qx /etc/hone-build/build.conf || fail "build.conf is not a conffile"
dpkg-deb -f "$deb" Package Version Architecture Depends
ok "the archive has the binary, the unit, the docs and build.conf (a conffile, no secret set)"

# --- lintian --------------------------------------------------------------
if ! command -v lintian >/dev/null; then
  step "installing lintian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lintian >/dev/null
fi
step "lintian $(lintian --version | sed 's/^Lintian v//')"
# Accepted warnings are overridden in packaging/lintian-overrides (shipped in
# the package), each with its reason; any other error or warning fails the
# check (informational tags, I:, do not).
# The overridden ones are shown as O: with their reasons (N:).
lintian --fail-on none --display-info --show-overrides "$deb" 2>&1 | tee "$work/lintian"
[ "${PIPESTATUS[0]}" = 0 ] || fail "lintian did not run"
if grep -Eq '^(E|W): ' "$work/lintian"; then fail "lintian reports errors or warnings (E:, W:)"; fi
ok "lintian: no errors or warnings besides the overridden ones"

# --- Installation -----------------------------------------------------------
step "dpkg -i"
dpkg -i "$deb"
[ -x /usr/bin/hone-build ] || fail "no /usr/bin/hone-build"
/usr/bin/hone-build --version
# Static: no program interpreter, no shared library needed.
if readelf -lW /usr/bin/hone-build | grep -q 'INTERP' || readelf -dW /usr/bin/hone-build | grep -q NEEDED; then
  fail "/usr/bin/hone-build is not static"
fi
getent passwd hone-build | tee "$work/passwd"
IFS=: read -r _ _ uid gid _ home shell <"$work/passwd"
[ "$uid" -lt 1000 ] || fail "hone-build is not a system user (uid $uid)"
[ "$home" = /var/lib/hone-build ] || fail "hone-build's home is $home"
[ "$shell" = /usr/sbin/nologin ] || fail "hone-build's shell is $shell"
[ "$(getent group hone-build | cut -d: -f3)" = "$gid" ] || fail "hone-build's group is not its own"
for d in /var/lib/hone-build /var/lib/hone-build/uploads; do
  [ "$(stat -c '%U:%G %a' "$d")" = "hone-build:hone-build 750" ] || fail "$d is $(stat -c '%U:%G %a' "$d")"
done
[ "$(stat -c '%U:%G %a' /etc/hone-build/build.conf)" = "root:hone-build 640" ] ||
  fail "build.conf is $(stat -c '%U:%G %a' /etc/hone-build/build.conf)"
dpkg-statoverride --list /etc/hone-build/build.conf | grep -q '^root hone-build 0*640 ' || fail "no stat override for build.conf"
grep -qx 'DATA_DIR=/var/lib/hone-build' /etc/hone-build/build.conf || fail "build.conf's DATA_DIR"
grep -qx 'UPLOADS_DIR=/var/lib/hone-build/uploads' /etc/hone-build/build.conf || fail "build.conf's UPLOADS_DIR"
unit=/usr/lib/systemd/system/hone-build.service
grep -qx 'ExecStart=/usr/bin/hone-build --config /etc/hone-build/build.conf' "$unit" || fail "the unit's ExecStart"
grep -qx 'StateDirectory=hone-build' "$unit" || fail "the unit's StateDirectory"
[ ! -e /etc/systemd/system/multi-user.target.wants/hone-build.service ] || fail "the package enabled the unit"
ok "files, user hone-build ($uid), directories and build.conf (root:hone-build 0640) as expected"

# --- The unit ---------------------------------------------------------------
if [ -d /run/systemd/system ]; then step "systemd runs this machine"; else step "no systemd running (PID 1: $(ps -o comm= -p 1)): offline checks"; fi
systemd-analyze verify "$unit"
ok "systemd-analyze verify: the unit is accepted"
systemd-analyze security --offline=true --no-pager "$unit" >"$work/security" 2>&1 || true
grep -v '✓' "$work/security"
exposure=$(sed -n 's/.*Overall exposure level for hone-build.service: \([0-9.]*\).*/\1/p' "$work/security")
[ -n "$exposure" ] || fail "no exposure figure from systemd-analyze security"
systemd-analyze security --offline=true --threshold=$EXPOSURE_MAX_TENTHS "$unit" >/dev/null 2>&1 ||
  fail "exposure $exposure is above $((EXPOSURE_MAX_TENTHS / 10)).$((EXPOSURE_MAX_TENTHS % 10))"
ok "systemd-analyze security: exposure $exposure (at most $((EXPOSURE_MAX_TENTHS / 10)).$((EXPOSURE_MAX_TENTHS % 10)))"

# --- Running as hone-build ----------------------------------------------------
hb_start_sim
as_user() { setpriv --reuid=hone-build --regid=hone-build --init-groups env -C /var/lib/hone-build "$@"; }
as_user env HONE_BUILD_PERRY_HUB_URL="$sim" HONE_BUILD_PERRY_HUB_WS_URL="$sim_ws" hone-build --config /etc/hone-build/build.conf check-config \
  >"$work/check-config" 2>&1 || { cat "$work/check-config"; fail "check-config as hone-build"; }
cat "$work/check-config"
grep -q '^store: ok (sqlite)' "$work/check-config" || fail "check-config: no 'store: ok (sqlite)'"
grep -q '^hub: ok' "$work/check-config" || fail "check-config: no 'hub: ok'"
[ "$(stat -c %U /var/lib/hone-build/hone-build.sqlite3)" = hone-build ] || fail "the store is not hone-build's"
ok "check-config runs as hone-build: store and hub ok"
# Another user cannot read the configuration (it holds the secrets).
set +e
setpriv --reuid=nobody --regid=nogroup --clear-groups hone-build --config /etc/hone-build/build.conf check-config \
  >"$work/nobody" 2>&1
rc=$?
set -e
[ "$rc" = 2 ] && grep -q 'build.conf' "$work/nobody" || { cat "$work/nobody"; fail "nobody read build.conf (exit $rc)"; }
ok "user nobody cannot read build.conf: $(head -n1 "$work/nobody")"

# The service itself, as the unit starts it (without systemd's sandbox):
# PACKAGES_DIR is a directory of this test's.
install -d -o hone-build -g hone-build "$work/packages"
# (A simple command, not the function: $! is then hone-build's own pid, as
# setpriv and env exec what they run.)
setpriv --reuid=hone-build --regid=hone-build --init-groups env -C /var/lib/hone-build \
  HONE_BUILD_PERRY_HUB_URL="$sim" HONE_BUILD_PERRY_HUB_WS_URL="$sim_ws" HONE_BUILD_PORT=0 \
  HONE_BUILD_PACKAGES_DIR="$work/packages" hone-build --config /etc/hone-build/build.conf 2>"$work/serve.log" &
serve_pid=$!
pids+=("$serve_pid")
base=$(wait_for_line "$work/serve.log" 'http://127.0.0.1:[0-9]*') || fail "hone-build did not start"
curl -fsS "$base/health" >/dev/null || fail "GET /health"
[ "$(ps -o user= -p "$serve_pid")" = hone-build ] || fail "pid $serve_pid is not hone-build's: $(ps -o user=,args= -p "$serve_pid")"
kill -TERM "$serve_pid"
wait "$serve_pid" || { rc=$?; cat "$work/serve.log"; fail "hone-build exited $rc after SIGTERM"; }
grep -q 'config: /etc/hone-build/build.conf' "$work/serve.log" || fail "serve did not read /etc/hone-build/build.conf"
echo marketplace >"$work/packages/marker"
ok "hone-build serves as hone-build ($base/health) and stops on SIGTERM"

# --- Under systemd ---------------------------------------------------------------
# The installed unit, run by a real systemd: PID 1 of private pid, mount, UTS
# and IPC namespaces (container mode), which starts nothing but the unit. A
# runtime drop-in in that namespace's own /run points hone-build at the
# simulator, a free port and PACKAGES_DIR=/var/lib/hone-build/packages, and
# logs to a file; it changes no sandbox setting. scripts/smoke.sh publishes
# for all five platforms through it; `systemctl stop` must end it with 0.
if [ -d /run/systemd/system ]; then
  step "NOT checked under systemd: this machine runs systemd (start the unit with systemctl)"
elif ! command -v unshare >/dev/null || [ ! -x /lib/systemd/systemd ]; then
  step "NOT checked under systemd: no unshare or /lib/systemd/systemd"
else
  secret="check-deb-$RANDOM$RANDOM"
  : >"$work/unit.log"
  cat >"$work/drop-in.conf" <<EOT
[Unit]
DefaultDependencies=no
[Service]
Environment=HONE_BUILD_PORT=0 HONE_BUILD_BIND=127.0.0.1 HONE_BUILD_PERRY_HUB_URL=$sim HONE_BUILD_PERRY_HUB_WS_URL=$sim_ws
Environment=HONE_BUILD_PERRY_HUB_LICENSE_KEY=sim-license HONE_BUILD_UPLOAD_SECRET=$secret HONE_BUILD_PACKAGES_DIR=/var/lib/hone-build/packages
StandardOutput=append:$work/unit.log
StandardError=append:$work/unit.log
EOT
  unshare --mount --pid --uts --ipc --kill-child --mount-proc --propagation private bash -c "
    mount -t tmpfs tmpfs /run
    mkdir -p /run/systemd/system/hone-build.service.d
    cp '$work/drop-in.conf' /run/systemd/system/hone-build.service.d/check-deb.conf
    printf '[Unit]\nDefaultDependencies=no\nWants=hone-build.service\n' >/run/systemd/system/check-deb.target
    exec env container=check-deb /lib/systemd/systemd --system --unit=check-deb.target --log-target=console
  " >"$work/systemd.log" 2>&1 &
  unshare_pid=$!
  pids+=("$unshare_pid")
  ubase=$(wait_for_line "$work/unit.log" 'http://127.0.0.1:[0-9]*') || fail "the unit did not start"
  sd_pid=$(pgrep -P "$unshare_pid")
  in_ns() { nsenter -t "$sd_pid" -m -p "$@"; }
  main_pid=$(pgrep -u hone-build -x hone-build)
  grep -E '^(NoNewPrivs|Seccomp|CapBnd|CapEff):' "/proc/$main_pid/status" | tr '\n' ' ' | tee "$work/sandbox"; echo
  grep -Eq 'CapEff:\s+0+ .*CapBnd:\s+0+ .*NoNewPrivs:\s+1 .*Seccomp:\s+2 ' "$work/sandbox" ||
    fail "hone-build under systemd is not sandboxed: $(cat "$work/sandbox")"
  [ "$(awk '$5 == "/" {print $6}' "/proc/$main_pid/mountinfo" | cut -d, -f1)" = ro ] || fail "/ is writable for the service"
  in_ns systemd-analyze security --no-pager hone-build.service | tail -n1
  SMOKE_PLATFORMS=macos,linux,windows,ios,android SMOKE_TIMEOUT=60 bash scripts/smoke.sh "$ubase" "$secret" \
    >"$work/smoke.out" 2>&1 || { cat "$work/smoke.out" "$work/unit.log"; fail "smoke test against the unit"; }
  tail -n1 "$work/smoke.out"
  [ "$(find /var/lib/hone-build/packages -name '*.bin' | wc -l)" = 5 ] || fail "the unit did not store 5 programs"
  in_ns systemctl stop hone-build
  in_ns systemctl show -p Result -p ExecMainStatus hone-build | tr '\n' ' ' | tee "$work/stopped"; echo
  grep -q 'Result=success ExecMainStatus=0' "$work/stopped" || fail "systemctl stop: $(cat "$work/stopped")"
  if grep -q "$secret" "$work/unit.log"; then fail "the upload secret is in the service's log"; fi
  in_ns systemctl exit 0 || true
  wait "$unshare_pid" || true
  unshare_pid=
  rm -rf /var/lib/hone-build/packages
  ok "under systemd (pid $main_pid: seccomp, no capabilities, read-only /) the unit serves a 5-platform publish and stops with 0"
fi

# --- Upgrade keeps a local change ---------------------------------------------
echo 'LOG_LEVEL=debug' >>/etc/hone-build/build.conf
dpkg-deb -R "$deb" "$work/next"
sed -i 's/^Version: .*/&+check/' "$work/next/DEBIAN/control"
dpkg-deb --root-owner-group -b "$work/next" "$work/next.deb" >/dev/null
dpkg -i "$work/next.deb" >/dev/null
[ "$(dpkg-query -W -f='${Version}' hone-build)" = "$(dpkg-deb -f "$deb" Version)+check" ] || fail "the upgrade did not happen"
tail -n1 /etc/hone-build/build.conf | grep -qx 'LOG_LEVEL=debug' || fail "the upgrade lost the local change of build.conf"
[ "$(stat -c '%U:%G %a' /etc/hone-build/build.conf)" = "root:hone-build 640" ] || fail "the upgrade changed build.conf's owner or mode"
ok "upgrade to $(dpkg-query -W -f='${Version}' hone-build): build.conf keeps the local change, owner and mode"

# --- Remove, then purge -------------------------------------------------------
dpkg -r hone-build >/dev/null
for f in /usr/bin/hone-build "$unit" /usr/share/doc/hone-build; do [ ! -e "$f" ] || fail "dpkg -r left $f"; done
for f in /etc/hone-build/build.conf /var/lib/hone-build/hone-build.sqlite3 /var/lib/hone-build/uploads; do
  [ -e "$f" ] || fail "dpkg -r removed $f"
done
getent passwd hone-build >/dev/null || fail "dpkg -r removed the user"
ok "dpkg -r: program, unit and docs gone; configuration, store, uploads and user kept"
dpkg -P hone-build >/dev/null
for f in /etc/hone-build /var/lib/hone-build; do [ ! -e "$f" ] || fail "dpkg -P left $f"; done
if dpkg-statoverride --list /etc/hone-build/build.conf >/dev/null; then fail "dpkg -P left the stat override"; fi
[ "$(cat "$work/packages/marker")" = marketplace ] || fail "dpkg -P touched PACKAGES_DIR"
getent passwd hone-build >/dev/null || fail "dpkg -P removed the user (files in PACKAGES_DIR are its)"
ok "dpkg -P: configuration and /var/lib/hone-build gone; PACKAGES_DIR and the user kept"

# A PACKAGES_DIR inside /var/lib/hone-build survives a purge too.
dpkg -i "$deb" >/dev/null
[ "$(getent passwd hone-build | cut -d: -f3)" = "$uid" ] || fail "a reinstallation did not reuse the user"
install -d -o hone-build -g hone-build /var/lib/hone-build/packages/p/1.0.0
echo marketplace >/var/lib/hone-build/packages/p/1.0.0/linux-x64.bin
touch /var/lib/hone-build/hone-build.sqlite3 /var/lib/hone-build/uploads/x.tar.gz
dpkg -P hone-build >"$work/purge.out" 2>&1
cat "$work/purge.out"
[ "$(cat /var/lib/hone-build/packages/p/1.0.0/linux-x64.bin)" = marketplace ] || fail "dpkg -P removed a PACKAGES_DIR inside /var/lib/hone-build"
for f in /var/lib/hone-build/hone-build.sqlite3 /var/lib/hone-build/uploads /etc/hone-build; do
  [ ! -e "$f" ] || fail "dpkg -P left $f"
done
grep -q 'kept' "$work/purge.out" || fail "dpkg -P did not say why it kept /var/lib/hone-build"
rm -rf /var/lib/hone-build
ok "dpkg -P with a PACKAGES_DIR in /var/lib/hone-build: store and uploads gone, packages kept"
echo "check-deb: $passed passed, 0 failed"
