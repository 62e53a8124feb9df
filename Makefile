# CYPHONIC-Swift. `make test` builds and runs every test; integration tests that need
# root skip with a message when not root.
SWIFT ?= swift
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?= 1000000
# Debian packages: the build (libcrypto, SQLite), and the tests' real tools (namespaces,
# nftables, iperf3, ping, dig, curl, the python3 flood sender).
BUILD_PACKAGES = libssl-dev libsqlite3-dev pkg-config
TEST_PACKAGES = $(BUILD_PACKAGES) openssl iproute2 nftables iperf3 iputils-ping dnsutils procps curl python3

.PHONY: build release test fuzz bench bench-tunnel bench-hub lab-up lab-down clean format format-check

build:
	@scripts/ensure-packages.sh $(BUILD_PACKAGES)
	$(SWIFT) build

release:
	@scripts/ensure-packages.sh $(BUILD_PACKAGES)
	$(SWIFT) build -c release

test:
	@scripts/ensure-packages.sh $(TEST_PACKAGES)
	@scripts/format-check.sh
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

fuzz:
	FUZZ_RUNS=$(FUZZ_RUNS) FUZZ_SECONDS=$(FUZZ_SECONDS) ./FuzzTesting/run.sh

bench:
	$(SWIFT) build -c release --product cyphonic-bench
	./.build/release/cyphonic-bench crypto
	./.build/release/cyphonic-bench logins

# Tunnel throughput/RTT/CPU against raw veth, wireguard-go and nebula (root; Debian
# packages iperf3 wireguard-go wireguard-tools nebula bc). Writes bench-out/.
bench-tunnel:
	$(SWIFT) build -c release
	bash bench/tunnel.sh

# The hub (the paper's evaluation model): 1 responder, N = 1, 2, 5, 10 initiators sending
# TCP at once, ping during the load; cyphonic single/multi, wireguard-go, nebula in one run
# (root; the lab's namespace names, so no lab may be up). Writes bench-out/hub-results.csv.
bench-hub:
	@scripts/ensure-packages.sh $(BUILD_PACKAGES) iproute2 iperf3 iputils-ping python3 bc wireguard-go wireguard-tools nebula
	$(SWIFT) build -c release
	bash bench/hub.sh

# The lab (DESIGN §6): 1 responder + 10 initiators enrolled with an as-server, in network
# namespaces (root). Static peers until nms-server and the resolver exist.
LAB_PACKAGES = $(BUILD_PACKAGES) iproute2 iperf3 iputils-ping python3
lab-up:
	@scripts/ensure-packages.sh $(LAB_PACKAGES)
	$(SWIFT) build -c release
	@scripts/lab.sh up

lab-down:
	@scripts/lab.sh down

# One formatter for the tree (swift-format from the toolchain, config in .swift-format).
format:
	swift format format -i -r --parallel Sources Tests Benchmarks FuzzTesting Package.swift

format-check:
	@scripts/format-check.sh

clean:
	rm -rf .build FuzzTesting/.out
