# hone-build — common tasks. `make help` lists them.
CARGO   ?= cargo
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR   = $(DESTDIR)$(PREFIX)/bin
UNITDIR  = $(DESTDIR)$(PREFIX)/lib/systemd/system
CONFDIR  = $(DESTDIR)$(PREFIX)/etc/hone-build

.PHONY: help build run test lint unit bench smoke clean install uninstall

help:
	@echo "make run      build (release) and start hone-build on the embedded store"
	@echo "make test     formatting, clippy, and every test (needs MariaDB on 127.0.0.1:3306)"
	@echo "make lint     cargo fmt --check and clippy only"
	@echo "make bench    benchmarks (release build): memory and speed figures"
	@echo "make build    release binaries in target/release"
	@echo "make clean    remove build output"

build:
	$(CARGO) build --release --bins

run:
	$(CARGO) run --release --bin hone-build

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

test: lint
	$(CARGO) test

bench: build
	bash scripts/bench-upload.sh
	bash scripts/bench-artifact.sh

clean:
	$(CARGO) clean
