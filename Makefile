# CYPHONIC-Swift. `make test` builds and runs every test; integration tests that need
# root skip with a message when not root.
SWIFT ?= swift
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?= 1000000
# Debian packages: the build (libcrypto, SQLite), and the tests' real tools (namespaces,
# nftables, iperf3, ping, dig, curl, the python3 flood sender).
BUILD_PACKAGES = libssl-dev libsqlite3-dev pkg-config
TEST_PACKAGES = $(BUILD_PACKAGES) openssl iproute2 nftables iperf3 iputils-ping dnsutils procps curl python3 libc-bin

.PHONY: build release test fuzz bench bench-tunnel bench-hub bench-setup bench-relay bench-nms lab-up lab-down lab-status lab-smoke lab-smoke-nat clean format format-check

build:
	@scripts/ensure-packages.sh $(BUILD_PACKAGES)
	$(SWIFT) build

release:
	@scripts/ensure-packages.sh $(BUILD_PACKAGES)
	$(SWIFT) build -c release

# Then the lab end to end (lab/smoke.sh, then its NAT scenario, lab/smoke-nat.sh) with the
# debug binaries just built, when root.
test:
	@scripts/ensure-packages.sh $(TEST_PACKAGES)
	@scripts/format-check.sh
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	@if [ "$$(id -u)" -eq 0 ]; then BIN=.build/debug lab/smoke.sh && BIN=.build/debug lab/smoke-nat.sh; \
	else echo "lab-smoke and lab-smoke-nat skipped: need root (network namespaces, TUN)"; fi

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

# Tunnel set-up time in the lab: DNS query for a peer's name -> answer with the tunnel up,
# 100 set-ups over the 10 initiators (root; brings the lab up and down). bench-out/.
bench-setup:
	@scripts/ensure-packages.sh $(LAB_PACKAGES) bc
	$(SWIFT) build -c release
	bash bench/setup.sh

# The same tunnel relayed (trs-relay) and direct in one run: TCP, idle and loaded RTT, relay
# CPU per GB, out-of-order datagrams (root; brings the NAT lab up and down). bench-out/.
bench-relay:
	@scripts/ensure-packages.sh $(LAB_PACKAGES) bc
	$(SWIFT) build -c release
	bash bench/relay.sh

# NMS capacity: 100 000 simulated nodes registered over real UDP and Noise sessions,
# then direction requests per second and registration memory per node.
bench-nms:
	$(SWIFT) build -c release
	./.build/release/cyphonic-bench nms

# The lab (DESIGN §6, lab/README.md): as-server, nms-server and trs-relay in cy-cloud,
# 1 responder and 10 initiators that reach each other by name through the NMS and their
# resolvers (root). `make lab-up SCENARIO=nat` adds NAT routers, their LANs and a v4-only
# and a v6-only island, one node pair per route of DESIGN §5.
SCENARIO ?=
LAB_PACKAGES = $(BUILD_PACKAGES) iproute2 nftables iperf3 iputils-ping dnsutils procps python3 libc-bin curl
lab-up:
	@[ "$$(id -u)" -eq 0 ] || { echo "lab-up needs root (network namespaces, TUN)"; exit 1; }
	@scripts/ensure-packages.sh $(LAB_PACKAGES)
	$(SWIFT) build -c release
	@SCENARIO=$(SCENARIO) lab/lab.sh up

lab-down:
	@lab/lab.sh down

lab-status:
	@lab/lab.sh status

# The lab end to end: names, IPv4/IPv6, getent/dig, iperf3, NXDOMAIN, NMS and node restarts.
lab-smoke:
	@[ "$$(id -u)" -eq 0 ] || { echo "lab-smoke needs root (network namespaces, TUN)"; exit 1; }
	@scripts/ensure-packages.sh $(LAB_PACKAGES)
	$(SWIFT) build -c release
	@lab/smoke.sh

# The NAT scenario end to end: every route of DESIGN §5 (direct, local, punched, relay),
# iperf3 through the relay, v4-only <-> v6-only, a TRS restart, relay <-> direct switches.
lab-smoke-nat:
	@[ "$$(id -u)" -eq 0 ] || { echo "lab-smoke-nat needs root (network namespaces, TUN)"; exit 1; }
	@scripts/ensure-packages.sh $(LAB_PACKAGES)
	$(SWIFT) build -c release
	@lab/smoke-nat.sh

# One formatter for the tree (swift-format from the toolchain, config in .swift-format).
format:
	swift format format -i -r --parallel Sources Tests Benchmarks FuzzTesting Package.swift

format-check:
	@scripts/format-check.sh

clean:
	rm -rf .build FuzzTesting/.out
