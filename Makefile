# mcp-proxy: build, run, test.
#   make run     build the release binary and serve the demo server over HTTP
#   make test    run the whole test suite
#   make interop official SDKs and reference servers through the proxy (tests/interop/README.md)

CARGO ?= cargo
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: all build run test lint clean

all:
	$(CARGO) build --release --locked

build: all

run: all
	./target/release/mcp-proxy --host $(HOST) --port $(PORT) -- ./target/release/mcp-demo-server

test:
	$(CARGO) build --locked --bins
	$(CARGO) test --locked

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

clean:
	$(CARGO) clean

.PHONY: interop
interop:
	tests/interop/run.sh
