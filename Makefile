# sipwall build and test entry points. `make` alone builds bin/sipwall.

GO       ?= go
BIN      := bin/sipwall
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
FUZZTIME ?= 60s

.DEFAULT_GOAL := build

.PHONY: all build run tools test test-short bench bench-call bench-xdp bpf fuzz fmt vet clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/sipwall

run: build
	./$(BIN) demo

# External programs the tests drive (sipp, ...); installs only what is missing.
tools:
	bash scripts/install-test-tools.sh

# Every fuzz target also runs briefly here; a count budget, not a duration,
# because duration-bounded fuzzing can end on a spurious coordinator timeout
# in this Go release.
FUZZ_SMOKE ?= 3000x

# Screenshots of the web console's browser test land in test-artefacts/.
SIPWALL_ARTEFACTS ?= $(CURDIR)/test-artefacts
export SIPWALL_ARTEFACTS

test: tools
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...
	FUZZTIME='$(FUZZ_SMOKE)' GO='$(GO)' bash scripts/fuzz.sh

test-short:
	$(GO) test -short ./...

# Every benchmark figure (calls/s per chain vs Kamailio, REGISTER/s,
# latency, memory per call, media relay, XDP), about 20 minutes.
bench:
	bash scripts/install-test-tools.sh --bench
	bash scripts/bench-suite.sh

# One call-rate run (scripts/bench.sh; its environment picks the chain).
bench-call:
	bash scripts/bench.sh

# Regenerate the XDP object and its Go bindings from bpf/xdp.c (needs clang
# and the libbpf headers: Debian clang, libbpf-dev).
bpf:
	BPF_CFLAGS=-I/usr/include/$$(gcc -dumpmachine) $(GO) generate ./bpf

# XDP prefilter flood benchmark (root; network namespaces, under 5 minutes).
bench-xdp:
	bash scripts/bench-xdp.sh

# Every Fuzz* target in the tree, one after the other, FUZZTIME each.
fuzz:
	FUZZTIME='$(FUZZTIME)' GO='$(GO)' bash scripts/fuzz.sh

fmt:
	$(GO) fmt ./...

vet:
	$(GO) vet ./...

clean:
	rm -rf bin
	$(GO) clean -testcache
