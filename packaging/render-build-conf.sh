#!/usr/bin/env bash
# The Debian package's /etc/hone-build/build.conf, on standard output: the
# example configuration (every key at its default, generated from the key
# table) with a header of its own and the directories of the package's
# layout. Fails if a line it changes is not in the example.
# Usage: packaging/render-build-conf.sh build.conf.example PACKAGES_DIR
set -euo pipefail
example=$1 packages_dir=$2
for line in 'DATA_DIR=./data' 'UPLOADS_DIR=./data/uploads' 'PACKAGES_DIR=../hone-marketplace/data/packages'; do
  grep -qx "$line" "$example" || { echo "render-build-conf: '$line' not in $example" >&2; exit 1; }
done
cat <<HEADER
# hone-build configuration of the Debian package, read by the systemd unit
# (hone-build --config /etc/hone-build/build.conf). Readable by root and the
# hone-build group only: it holds secrets. An upgrade keeps your changes.
#
# Before the first start set at least PUBLIC_URL, UPLOAD_SECRET and
# PERRY_HUB_TOKEN (and DB_* for the marketplace's MySQL database), then:
#   runuser -u hone-build -- hone-build --config /etc/hone-build/build.conf check-config
#   systemctl enable --now hone-build
# The unit lets hone-build write DATA_DIR, UPLOADS_DIR and PACKAGES_DIR as
# set below; moving one needs ReadWritePaths= in a drop-in too
# (systemctl edit hone-build). /usr/share/doc/hone-build/docs/ has the manual.
#
HEADER
# The example's own header (up to the first blank line) is replaced above.
sed -e '1,/^$/d' \
    -e 's|^DATA_DIR=./data$|DATA_DIR=/var/lib/hone-build|' \
    -e 's|^UPLOADS_DIR=./data/uploads$|UPLOADS_DIR=/var/lib/hone-build/uploads|' \
    -e "s|^PACKAGES_DIR=../hone-marketplace/data/packages\$|PACKAGES_DIR=$packages_dir|" \
    "$example"
