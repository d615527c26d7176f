# mcp-proxy: build, run, test.
#   make run     build the release binary and serve the demo server over HTTP
#   make test    run the whole test suite

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

# Fuzzing (issue 8): cargo-fuzz on the nightly toolchain, each target for
# FUZZ_SECONDS; new inputs go to .cache/fuzz, the seeds in tests/fuzz/corpus.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = sse_parser jsonrpc_message cli_args config_file
.PHONY: fuzz
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p .cache/fuzz/$$t; \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	  $(CARGO) +nightly fuzz run --fuzz-dir tests/fuzz $$t .cache/fuzz/$$t tests/fuzz/corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

# make bench: ours side by side with the Python mcp-proxy 0.13.0 and
# supergateway 4.0.0 (installed into $(BENCH_CACHE) on first use, each in
# its own venv / prefix); table printed, report in target/bench/.
BENCH_CACHE ?= .cache/bench
.PHONY: bench
bench:
	$(CARGO) build --release --locked --bins
	@if $(MAKE) -n static >/dev/null 2>&1; then \
		$(MAKE) static || echo "bench: static build failed; the size row is the dynamic binary"; fi
	@test -x $(BENCH_CACHE)/py/bin/mcp-proxy || { \
		python3 -m venv $(BENCH_CACHE)/py && \
		$(BENCH_CACHE)/py/bin/pip install --quiet mcp-proxy==0.13.0; } || \
		echo "bench: could not install the Python mcp-proxy (needs python3-venv); it is skipped"
	@test -f $(BENCH_CACHE)/node/node_modules/supergateway/dist/index.js || \
		npm install --silent --prefix $(BENCH_CACHE)/node supergateway@4.0.0 || \
		echo "bench: could not install supergateway (needs npm); it is skipped"
	$(CARGO) bench --locked --bench mcp-bench -- run \
		--python $(BENCH_CACHE)/py/bin/mcp-proxy \
		--supergateway $(BENCH_CACHE)/node/node_modules/supergateway/dist/index.js
