# hone-build — common tasks. `make help` lists them.
CARGO   ?= cargo
PREFIX  ?= /usr/local
DESTDIR ?=
# Release binaries are linked statically (glibc's crt-static) for the host
# target: no shared library is needed at start, but glibc still loads the
# host's NSS modules to resolve host names (README.md, "Release build").
TARGET       ?= $(shell rustc -vV | sed -n 's/^host: //p')
RELEASE_DIR   = target/$(TARGET)/release
STATIC_FLAGS ?= -C target-feature=+crt-static

# Where the installed service keeps its files (written into the unit).
SERVICE_USER ?= hone-build
DATA_DIR     ?= /var/lib/hone-build
UPLOADS_DIR  ?= $(DATA_DIR)/uploads
PACKAGES_DIR ?= /srv/hone-marketplace/data/packages
CONFDIR      ?= /etc/hone-build
UNITDIR      ?= /etc/systemd/system
BINDIR        = $(PREFIX)/bin
DOCDIR        = $(PREFIX)/share/doc/hone-build

.PHONY: help build run demo test check-api lint fuzz bench bench-load bench-follow bench-logs bench-status smoke clean install uninstall check-install deb check-deb

help:
	@echo "make run      build (release) and start hone-build on the embedded store, files in ./data"
	@echo "make demo     build (debug), start a simulated Perry Hub and hone-build in a temporary directory,"
	@echo "              publish a sample plugin for every platform and show its builds until they complete"
	@echo "make test     formatting, clippy, and every test (needs MariaDB on 127.0.0.1:3306)"
	@echo "make check-api  schemathesis (in target/venv) against a live instance: docs/openapi.yaml, every check, >= 1000 cases"
	@echo "make lint     cargo fmt --check and clippy only"
	@echo "make fuzz     the property tests with FUZZ_CASES (20000) cases each"
	@echo "make bench    benchmarks (release build): memory, intake speed, load figures"
	@echo "make bench-load  the load benchmark alone"
	@echo "make bench-follow  a 128 MiB program followed, downloaded and unpacked (time, RSS, ratio to sha256sum)"
	@echo "make bench-logs  a log at its 1 MiB bound read whole and as ?tail=200 (bytes, time, ratios)"
	@echo "make bench-status  GET /status on MariaDB: hone-build vs a Node stand-in of the old server (wrk)"
	@echo "make build    release binaries (static) in target/<host>/release"
	@echo "make smoke    start perry-hub-sim and hone-build on loopback and run scripts/smoke.sh"
	@echo "make install  binary, systemd unit, example configuration (PREFIX, DESTDIR, DATA_DIR, PACKAGES_DIR)"
	@echo "make uninstall"
	@echo "make check-install  install into a temporary DESTDIR, verify the files and the unit"
	@echo "make deb     the Debian package target/debian/hone-build_<version>_<arch>.deb (cargo-deb)"
	@echo "make check-deb  build the package, install, check and purge it on this machine (root), lintian"
	@echo "make clean    remove build output"

build:
	RUSTFLAGS="$(STATIC_FLAGS)" $(CARGO) build --release --bins --target $(TARGET)
	@ls -l $(RELEASE_DIR)/hone-build

# `make run` is a demo: its store, tarballs and binaries stay under RUN_DIR
# in the clone (PACKAGES_DIR's default, ../hone-marketplace/data/packages, is
# for a deployment beside the marketplace). These override a build.conf.
RUN_DIR ?= data
run: build
	HONE_BUILD_DATA_DIR=$(RUN_DIR) HONE_BUILD_UPLOADS_DIR=$(RUN_DIR)/uploads HONE_BUILD_PACKAGES_DIR=$(RUN_DIR)/packages $(RELEASE_DIR)/hone-build

# `make demo`: everything in a temporary directory, on loopback ports the
# system picks (scripts/demo.sh); Ctrl-C stops it and removes the directory.
# A debug build: a new clone's first demo compiles in a fraction of the
# release build's time (no link-time optimization), and `make test` reuses it.
demo:
	$(CARGO) build --bins
	BIN_DIR=target/debug bash scripts/demo.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

test: lint
	$(CARGO) test

# The live service against its description (docs/openapi.yaml) with
# schemathesis from PyPI (pinned in the script, installed into
# target/venv): perry-hub-sim as today's hub, hone-build on the embedded
# store in a temporary directory, every check, at least 1000 cases; fails on
# any 5xx or any answer the description does not allow. A few minutes.
check-api:
	$(CARGO) build --bins
	bash scripts/check-api.sh target/debug

# The property tests with many more cases than `make test` runs.
FUZZ_CASES ?= 20000
fuzz:
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --release --test it properties::

bench: build
	BIN_DIR=$(RELEASE_DIR) bash scripts/bench-upload.sh
	BIN_DIR=$(RELEASE_DIR) bash scripts/bench-artifact.sh
	BIN_DIR=$(RELEASE_DIR) bash scripts/bench-load.sh
	BIN_DIR=$(RELEASE_DIR) bash scripts/bench-follow.sh
	BIN_DIR=$(RELEASE_DIR) bash scripts/bench-logs.sh

# A 128 MiB program delivered through the WebSocket, a download and its package.
bench-follow: build
	BIN_DIR=$(RELEASE_DIR) bash scripts/bench-follow.sh

# A log at its 1 MiB bound read whole and as the build page reads it
# (?tail=200): bytes and time per answer, and the ratios.
bench-logs: build
	BIN_DIR=$(RELEASE_DIR) bash scripts/bench-logs.sh

# The load benchmark alone: mixed traffic, then stalled connections (~1 min).
bench-load: build
	BIN_DIR=$(RELEASE_DIR) bash scripts/bench-load.sh

# GET /status on MySQL side by side with a stand-in of the old server's
# (Node, Fastify, mysql2) on one MariaDB (127.0.0.1:3306, root), with wrk.
bench-status: build
	BIN_DIR=$(RELEASE_DIR) bash scripts/bench-status.sh

clean:
	$(CARGO) clean

smoke:
	$(CARGO) build --bins
	bash scripts/smoke-local.sh target/debug

# render_unit BINDIR,CONFDIR,DOCDIR,USER,DATA_DIR,UPLOADS_DIR,PACKAGES_DIR:
# the unit on standard output. StateDirectory= is DATA_DIR relative to
# /var/lib when it lies there, else empty (no state directory).
render_unit = sed -e 's|@BINDIR@|$(1)|g' -e 's|@CONFDIR@|$(2)|g' -e 's|@DOCDIR@|$(3)|g' \
	    -e 's|@USER@|$(4)|g' -e 's|@DATA_DIR@|$(5)|g' -e 's|@UPLOADS_DIR@|$(6)|g' \
	    -e 's|@PACKAGES_DIR@|$(7)|g' \
	    -e 's|@STATE_DIRECTORY@|$(patsubst /var/lib/%,%,$(filter /var/lib/%,$(5)))|g' \
	    scripts/hone-build.service.in

# Never builds: under sudo there is usually no Rust toolchain. `make build`
# first, as yourself.
install:
	@test -x $(RELEASE_DIR)/hone-build || { echo "make install: no $(RELEASE_DIR)/hone-build: run 'make build' first (as yourself, not under sudo)" >&2; exit 1; }
	install -D -m 0755 $(RELEASE_DIR)/hone-build $(DESTDIR)$(BINDIR)/hone-build
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(CONFDIR) $(DESTDIR)$(DOCDIR)
	$(call render_unit,$(BINDIR),$(CONFDIR),$(DOCDIR),$(SERVICE_USER),$(DATA_DIR),$(UPLOADS_DIR),$(PACKAGES_DIR)) \
	    > $(DESTDIR)$(UNITDIR)/hone-build.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/hone-build.service
	install -m 0644 build.conf.example $(DESTDIR)$(CONFDIR)/build.conf.example
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -d $(DESTDIR)$(DOCDIR)/docs
	install -m 0644 docs/*.md $(DESTDIR)$(DOCDIR)/docs/
	@echo "installed; see README.md, 'Deploying on the web server'"

check-install: build
	bash scripts/check-install.sh

# The Debian package (docs/operations.md, "Installing"). Its layout is fixed:
# /usr/bin, /etc/hone-build/build.conf, /var/lib/hone-build (DATA_DIR and
# UPLOADS_DIR); PACKAGES_DIR is this Makefile's. The unit and build.conf are
# rendered into DEB_STAGE (build.conf from build.conf.example, so every key
# and its default stay as the key table has them), then cargo-deb packages
# them with the static binary of `make build`, without building again.
CARGO_DEB_VERSION ?= 3.8.0
DEB_STAGE = target/deb-stage
DEB_DIR   = target/debian
deb: build
	@mkdir -p $(DEB_STAGE) $(DEB_DIR)
	$(call render_unit,/usr/bin,/etc/hone-build,/usr/share/doc/hone-build,hone-build,/var/lib/hone-build,/var/lib/hone-build/uploads,$(PACKAGES_DIR)) \
	    > $(DEB_STAGE)/hone-build.service
	bash packaging/render-build-conf.sh build.conf.example $(PACKAGES_DIR) > $(DEB_STAGE)/build.conf
	gzip -9n < packaging/changelog > $(DEB_STAGE)/changelog.gz
	@command -v cargo-deb >/dev/null || $(CARGO) install cargo-deb --locked --version $(CARGO_DEB_VERSION)
	rm -f $(DEB_DIR)/hone-build_*.deb
	$(CARGO) deb --no-build --target $(TARGET) --output $(DEB_DIR)/
	@ls -l $(DEB_DIR)/hone-build_*.deb

# Installs the package on this machine (root), checks it, purges it; lintian.
check-deb: deb
	bash scripts/check-deb.sh $(DEB_DIR)/hone-build_*.deb

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/hone-build $(DESTDIR)$(UNITDIR)/hone-build.service
	rm -f $(DESTDIR)$(CONFDIR)/build.conf.example $(DESTDIR)$(DOCDIR)/README.md
	rm -f $(DESTDIR)$(DOCDIR)/docs/*.md
	-rmdir $(DESTDIR)$(DOCDIR)/docs $(DESTDIR)$(DOCDIR) 2>/dev/null
	@echo "left in place: $(CONFDIR)/build.conf and the data directories"
