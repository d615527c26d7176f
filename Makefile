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

# Soak (issue 8, not in CI): SOAK_CALLS calls across SOAK_SESSIONS sessions
# with hang-ups, cancellations and the child killed every SOAK_KILL_SECS s.
.PHONY: soak
soak:
	$(CARGO) build --release --locked --bins
	$(CARGO) test --release --locked --test soak -- --ignored --nocapture
