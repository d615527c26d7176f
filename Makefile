# mcp-proxy: build, run, test, package.
#
#   make run        build the release binary and serve the demo server over HTTP
#   make test       run the whole test suite
#   make lint       rustfmt check, clippy with warnings denied, man page lint (if mandoc is there)
#   make lint-man   install mandoc if missing (Debian) and lint the man page
#   make static     static x86_64 musl binary, size-optimised profile `static` in Cargo.toml
#                   (installs the musl target and musl-tools if missing)
#   make check-static   prove the static binary is static, small, and runs with no environment
#   make install    copy what `make all` built into $(DESTDIR)$(BINDIR), the man page into
#                   $(DESTDIR)$(MANDIR), LICENSE and THIRD-PARTY-LICENSES into $(DESTDIR)$(DOCDIR)
#   make uninstall  remove what `make install` put there
#   make dist       tarball in dist/ with the static binary, man page, README, LICENSE and
#                   THIRD-PARTY-LICENSES (the crates' notices; .ci/third-party-licenses writes it)
#   make clean      remove target/ and dist/
#   make interop    official SDKs and reference servers through the proxy (tests/interop/README.md)
#   make bench      ours beside the Python mcp-proxy and supergateway (benches/README.md)
#   make fuzz       fuzz the parsers for FUZZ_SECONDS each (cargo-fuzz, nightly)
#   make soak       long run with hang-ups, cancels and child kills (not in CI)
#
# install and uninstall never run cargo, so `sudo make install` after `make`
# builds nothing as root.

CARGO   ?= cargo
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
DOCDIR  ?= $(PREFIX)/share/doc/mcp-proxy
DESTDIR ?=
INSTALL ?= install
HOST    ?= 127.0.0.1
PORT    ?= 8080

VERSION     := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
MUSL_TARGET := x86_64-unknown-linux-musl
RELEASE_BIN := target/release/mcp-proxy
STATIC_BIN  := target/$(MUSL_TARGET)/static/mcp-proxy
# What `make install` copies; `make install BIN=$(STATIC_BIN)` installs the static one.
BIN         ?= $(RELEASE_BIN)
DIST_NAME   := mcp-proxy-$(VERSION)-$(MUSL_TARGET)
# Size budget of the static binary, TLS included: 2.5 MB.
MAX_STATIC_BYTES ?= 2500000
# Pack the static-pie's relative relocations (DT_RELR, applied by Rust's
# bundled musl at start-up): 90 KB of .rela.dyn becomes about 1 KB, and the
# binary stays position-independent, so ASLR still applies. Added to, not in
# place of, the caller's RUSTFLAGS (CI builds with -D warnings).
#
# And drop the unwind tables (.eh_frame, 250 KB): with panic = "abort"
# nothing unwinds, so they only ever served the stack trace a panic prints,
# which in a stripped binary is a list of bare addresses. A panic still
# prints its message and ends the process with status 134. The linker script
# is written by the rule below (the C runtime's own small table stays: its
# start-up code refers to it).
STATIC_LD := target/static-no-unwind-tables.ld
STATIC_RUSTFLAGS := -C link-arg=-Wl,-z,pack-relative-relocs -C link-arg=-Wl,-T,$(CURDIR)/$(STATIC_LD)

# apt-get needs root; use sudo only when we are not root and sudo exists.
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)

.PHONY: all build run test lint lint-man static check-static install uninstall dist clean

all:
	$(CARGO) build --release --locked

build: all

run: all
	./$(RELEASE_BIN) --host $(HOST) --port $(PORT) -- ./target/release/mcp-demo-server

test:
	$(CARGO) build --locked --bins
	$(CARGO) test --locked

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	@if command -v mandoc >/dev/null 2>&1; then \
		echo "mandoc -Tlint man/mcp-proxy.1"; \
		mandoc -Tlint man/mcp-proxy.1; \
	else \
		echo "note: mandoc not installed, man page not linted (make lint-man installs it)"; \
	fi

lint-man:
	@command -v mandoc >/dev/null 2>&1 || { \
		echo "installing mandoc (Debian package) for the man page lint"; \
		$(SUDO) apt-get install -y -q mandoc || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q mandoc; }; }
	mandoc -Tlint man/mcp-proxy.1

$(STATIC_LD): Makefile
	@mkdir -p $(dir $@)
	printf '%s\n' 'SECTIONS { /DISCARD/ : { EXCLUDE_FILE(*crtbeginS.o *crtendS.o *crtbegin.o *crtend.o) *(.eh_frame) } } INSERT AFTER .text;' > $@

static: $(STATIC_LD)
	@if command -v rustup >/dev/null 2>&1; then rustup target add $(MUSL_TARGET); \
	else echo "note: no rustup; the $(MUSL_TARGET) standard library must already be installed"; fi
	@command -v musl-gcc >/dev/null 2>&1 || { \
		echo "installing musl-tools (Debian package) for musl-gcc"; \
		$(SUDO) apt-get install -y -q musl-tools || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q musl-tools; }; }
	CC_x86_64_unknown_linux_musl=musl-gcc RUSTFLAGS="$$RUSTFLAGS $(STATIC_RUSTFLAGS)" \
		$(CARGO) build --profile static --locked \
		--target $(MUSL_TARGET) --bin mcp-proxy
	@ls -l $(STATIC_BIN)

check-static: static
	MAX_BYTES=$(MAX_STATIC_BYTES) .ci/check-static $(STATIC_BIN)

install:
	@test -x "$(BIN)" || { \
		echo "install: $(BIN) is missing; run 'make' (as yourself, not root) first" >&2; exit 1; }
	$(INSTALL) -D -m 0755 "$(BIN)" "$(DESTDIR)$(BINDIR)/mcp-proxy"
	$(INSTALL) -D -m 0644 man/mcp-proxy.1 "$(DESTDIR)$(MANDIR)/man1/mcp-proxy.1"
	$(INSTALL) -D -m 0644 LICENSE "$(DESTDIR)$(DOCDIR)/LICENSE"
	$(INSTALL) -D -m 0644 THIRD-PARTY-LICENSES "$(DESTDIR)$(DOCDIR)/THIRD-PARTY-LICENSES"

uninstall:
	rm -f "$(DESTDIR)$(BINDIR)/mcp-proxy" "$(DESTDIR)$(MANDIR)/man1/mcp-proxy.1"
	rm -f "$(DESTDIR)$(DOCDIR)/LICENSE" "$(DESTDIR)$(DOCDIR)/THIRD-PARTY-LICENSES"
	rmdir "$(DESTDIR)$(DOCDIR)" 2>/dev/null || true

dist: static
	rm -rf dist/$(DIST_NAME) dist/$(DIST_NAME).tar.gz
	$(INSTALL) -D -m 0755 $(STATIC_BIN) dist/$(DIST_NAME)/mcp-proxy
	$(INSTALL) -D -m 0644 man/mcp-proxy.1 dist/$(DIST_NAME)/mcp-proxy.1
	$(INSTALL) -D -m 0644 README.md dist/$(DIST_NAME)/README.md
	$(INSTALL) -D -m 0644 LICENSE dist/$(DIST_NAME)/LICENSE
	$(INSTALL) -D -m 0644 THIRD-PARTY-LICENSES dist/$(DIST_NAME)/THIRD-PARTY-LICENSES
	tar -C dist --owner=0 --group=0 --numeric-owner --sort=name \
		-czf dist/$(DIST_NAME).tar.gz $(DIST_NAME)
	rm -rf dist/$(DIST_NAME)
	@ls -l dist/$(DIST_NAME).tar.gz

clean:
	$(CARGO) clean
	rm -rf dist

# Fuzzing (issue 8): cargo-fuzz on the nightly toolchain, each target for
# FUZZ_SECONDS; new inputs go to .cache/fuzz, the seeds in tests/fuzz/corpus.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = sse_parser jsonrpc_message cli_args config_file id_hint
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
	@rm -f target/bench/.ours
	@if $(MAKE) -n static >/dev/null 2>&1; then \
		if $(MAKE) static; then mkdir -p target/bench && echo "--ours $(STATIC_BIN)" > target/bench/.ours; \
		else echo "bench: static build failed; the dynamic binary is measured"; fi; fi
	@$(BENCH_CACHE)/py/bin/mcp-proxy --help >/dev/null 2>&1 || { \
		rm -rf $(BENCH_CACHE)/py && python3 -m venv $(BENCH_CACHE)/py && \
		$(BENCH_CACHE)/py/bin/pip install --quiet mcp-proxy==0.13.0; } || \
		echo "bench: could not install the Python mcp-proxy (needs python3-venv); it is skipped"
	@test -f $(BENCH_CACHE)/node/node_modules/supergateway/dist/index.js || \
		npm install --silent --prefix $(BENCH_CACHE)/node supergateway@4.0.0 || \
		echo "bench: could not install supergateway (needs npm); it is skipped"
	$(CARGO) bench --locked --bench mcp-bench -- run $$(cat target/bench/.ours 2>/dev/null) \
		--python $(BENCH_CACHE)/py/bin/mcp-proxy \
		--supergateway $(BENCH_CACHE)/node/node_modules/supergateway/dist/index.js

.PHONY: interop
interop:
	tests/interop/run.sh

# Soak (issue 8, not in CI): SOAK_CALLS calls across SOAK_SESSIONS sessions
# with hang-ups, cancellations and the child killed every SOAK_KILL_SECS s.
.PHONY: soak
soak:
	$(CARGO) build --release --locked --bins
	$(CARGO) test --release --locked --test soak -- --ignored --nocapture
