#!/usr/bin/env bash
# Checks `make install` into a temporary DESTDIR: the files it must produce,
# and (where systemd-analyze exists) that systemd accepts the unit.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
make --no-print-directory install DESTDIR="$dest" >/dev/null
for f in usr/local/bin/hone-build etc/systemd/system/hone-build.service \
         etc/hone-build/build.conf.example usr/local/share/doc/hone-build/README.md \
         usr/local/share/doc/hone-build/docs/operations.md; do
  [ -f "$dest/$f" ] || { echo "check-install: missing $f" >&2; exit 1; }
  echo "check-install: $f"
done
"$dest/usr/local/bin/hone-build" --version
unit="$dest/etc/systemd/system/hone-build.service"
for k in NoNewPrivileges=yes ProtectSystem=strict Restart=on-failure User=hone-build ReadWritePaths= LimitNOFILE= \
         StateDirectory=hone-build CapabilityBoundingSet= SystemCallFilter=@system-service; do
  grep -q "^$k" "$unit" || { echo "check-install: unit lacks $k" >&2; exit 1; }
done
if grep -q '@[A-Z_]*@' "$unit"; then echo "check-install: a placeholder is left: $(grep '@[A-Z_]*@' "$unit")" >&2; exit 1; fi
if command -v systemd-analyze >/dev/null; then
  # Verify a copy whose ExecStart points at the binary inside DESTDIR.
  sed "s|/usr/local/bin/hone-build|$dest/usr/local/bin/hone-build|" "$unit" >"$dest/hone-build.service"
  systemd-analyze verify "$dest/hone-build.service"
  echo "check-install: systemd-analyze verify accepts the unit"
fi
# A DATA_DIR outside /var/lib is no state directory of systemd's.
make --no-print-directory install DESTDIR="$dest/other" DATA_DIR=/srv/hone-build >/dev/null
other="$dest/other/etc/systemd/system/hone-build.service"
grep -qx 'StateDirectory=' "$other" && grep -q '^ReadWritePaths=-/srv/hone-build -/srv/hone-build/uploads ' "$other" ||
  { echo "check-install: DATA_DIR=/srv/hone-build is not in the unit as expected" >&2; exit 1; }
echo "check-install: DATA_DIR=/srv/hone-build: no StateDirectory, ReadWritePaths follows"
make --no-print-directory uninstall DESTDIR="$dest" >/dev/null
[ ! -e "$dest/usr/local/bin/hone-build" ] || { echo "check-install: uninstall left the binary" >&2; exit 1; }
[ ! -e "$dest/usr/local/share/doc/hone-build" ] || { echo "check-install: uninstall left the documentation" >&2; exit 1; }
echo "check-install: PASS"
