# vitals: thin wrappers around cargo and the scripts in scripts/.
CARGO ?= cargo
CONFIG ?= config/vitals.toml

.PHONY: all build release run test test-deps test-web lint fmt bench bench-peers soak clean deb image

all: build

## Build every crate (host, plugins, test fixtures) in debug mode.
build:
	$(CARGO) build --workspace

## Build the release host and plugins.
release:
	$(CARGO) build --workspace --release

## Build everything and start the host with the default config on 127.0.0.1.
run: release
	VITALS_HISTORY_PATH=$(CURDIR)/build/history.db ./target/release/vitals --config $(CONFIG)

## Install what the tests need (when missing), lint, build, and run every test; then print each
## skip and "N passed, N failed, N skipped". Fails on a failed test, and on any skip unless
## ALLOW_SKIPS=1; under CI (CI set, and not "0" or "false") a skip is a failed test.
test: test-deps lint build
	CARGO="$(CARGO)" bash scripts/test.sh all

## The dashboard's tests in a real browser, with the same summary.
test-web:
	$(CARGO) build --workspace
	CARGO="$(CARGO)" bash scripts/test.sh web

## Install and start the test dependencies that are missing (Debian).
test-deps:
	bash scripts/test-deps.sh

## Formatting, clippy with warnings as errors, and docs with warnings as errors.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

fmt:
	$(CARGO) fmt --all

## Benchmarks: vitals' own figures against the targets, one table (about 10 minutes; QUICK=1 for about 3).
bench: release
	./target/release/vitals-bench --plugin-benches $(if $(QUICK),--quick)

## The same figures beside collectd, node_exporter, netdata and Glances (installs them; needs root or sudo).
bench-peers: release
	bash scripts/bench-peers.sh $(if $(QUICK),--quick)

## Soak: first the idle CPU with 500 idle containers (docker, process, network, cpu, memory at 1 s),
## then every collector at 100 ms, the containers plus churn, 100 event-stream clients, for an
## hour; prints the slopes of RSS, threads and descriptors, and the CPU (MINUTES=5 CONTAINERS=100
## for a short run; scripts/soak.sh lists every knob).
soak: release
	SOAK_MINUTES=$(or $(MINUTES),60) SOAK_CONTAINERS=$(or $(CONTAINERS),500) bash scripts/soak.sh

## The host and the plugins that ship, in release mode (what `deb` and `image` package).
SHIPPED := -p vitals-host $(foreach p,cpu memory system gpu disk network process docker,-p vitals-plugin-$(p))
BUILD_DIR ?= target/release

## Debian package of the release build: target/debian/vitals_<version>_amd64.deb (debhelper;
## `BUILD_DIR=target/debug` packages the debug build instead, as the tests do).
deb:
	$(if $(filter target/release,$(BUILD_DIR)),$(CARGO) build --release $(SHIPPED))
	VITALS_BUILD_DIR=$(BUILD_DIR) bash scripts/deb.sh

## Container image vitals:<version> (and vitals:latest) from the release build, FROM scratch
## with exactly the libraries it loads: no registry is reached. The root Dockerfile builds
## the same image from source.
image:
	$(if $(filter target/release,$(BUILD_DIR)),$(CARGO) build --release $(SHIPPED))
	VITALS_BUILD_DIR=$(BUILD_DIR) bash scripts/image.sh

clean:
	$(CARGO) clean
