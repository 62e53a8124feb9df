# CYPHONIC-Swift. `make test` builds and runs every test; integration tests that need
# root skip with a message when not root.
SWIFT ?= swift
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?= 1000000
# Release builds link the Swift runtime statically: the binaries run on a host with only
# libssl3 and libsqlite3-0 (make dist; docker/).
RELEASE_BUILD = $(SWIFT) build -c release --static-swift-stdlib
# Debian packages: the build (libcrypto, SQLite), and the tests' real tools (namespaces,
# nftables, iperf3, ping, dig, curl, the python3 flood sender).
BUILD_PACKAGES = libssl-dev libsqlite3-dev pkg-config
TEST_PACKAGES = $(BUILD_PACKAGES) openssl iproute2 nftables iperf3 iputils-ping dnsutils procps curl python3 libc-bin systemd sqlite3 postgresql

.PHONY: dist docker-test build release test fuzz bench bench-tunnel bench-hub bench-setup bench-relay bench-nms bench-nms-replicas bench-pipeline lab-up lab-down lab-status lab-smoke lab-smoke-nat lab-smoke-ha lab-eval clean format format-check

build:
	@scripts/ensure-packages.sh $(BUILD_PACKAGES)
	$(SWIFT) build

release:
	@scripts/ensure-packages.sh $(BUILD_PACKAGES)
	$(RELEASE_BUILD)

# When root, the AS suite a second time and the NMS replica tests on a throwaway
# PostgreSQL cluster (the AS's second backend, two AS and two NMS replicas on one
# database), then the lab end to end (lab/smoke.sh, then its NAT scenario,
# lab/smoke-nat.sh, then its HA scenario, lab/smoke-ha.sh) with the debug binaries just built.
test:
	@scripts/ensure-packages.sh $(TEST_PACKAGES)
	@scripts/format-check.sh
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	@if [ "$$(id -u)" -eq 0 ]; then scripts/with-postgres.sh $(SWIFT) test --skip-build --filter "CyphonicASTests|NMSReplicaTests"; \
	else echo "AS suite on PostgreSQL skipped: needs root (runs a throwaway cluster as the postgres user)"; fi
	@if [ "$$(id -u)" -eq 0 ]; then BIN=.build/debug lab/smoke.sh && BIN=.build/debug lab/smoke-nat.sh && BIN=.build/debug lab/smoke-ha.sh; \
	else echo "lab-smoke, lab-smoke-nat and lab-smoke-ha skipped: need root (network namespaces, TUN)"; fi

# One tarball per program (binary with the Swift runtime linked in, example config,
# hardened systemd unit) in dist/, with SHA256SUMS; staged in .build/dist for docker/.
dist:
	@scripts/ensure-packages.sh $(BUILD_PACKAGES) binutils
	$(RELEASE_BUILD)
	@scripts/dist.sh

# The images of docker/ built and run for real: a private dockerd, AS/NMS/TRS from
# docker/compose.yaml, two node containers that ping each other by name (root).
docker-test: dist
	@scripts/ensure-packages.sh docker.io mmdebstrap docker-compose iproute2 python3 prometheus
	@docker/test.sh

fuzz:
	FUZZ_RUNS=$(FUZZ_RUNS) FUZZ_SECONDS=$(FUZZ_SECONDS) ./FuzzTesting/run.sh

bench:
	$(RELEASE_BUILD) --product cyphonic-bench
	./.build/release/cyphonic-bench crypto
	./.build/release/cyphonic-bench logins

# Tunnel throughput/RTT/CPU against raw veth, wireguard-go and nebula (root; Debian
# packages iperf3 wireguard-go wireguard-tools nebula bc). Writes bench-out/.
bench-tunnel:
	$(RELEASE_BUILD)
	bash bench/tunnel.sh

# The hub (the paper's evaluation model): 1 responder, N = 1, 2, 5, 10 initiators sending
# TCP at once, ping during the load; cyphonic single/multi, wireguard-go, nebula in one run
# (root; the lab's namespace names, so no lab may be up). Writes bench-out/hub-results.csv.
bench-hub:
	@scripts/ensure-packages.sh $(BUILD_PACKAGES) iproute2 iperf3 iputils-ping python3 bc wireguard-go wireguard-tools nebula
	$(RELEASE_BUILD)
	bash bench/hub.sh

# Tunnel set-up time in the lab: DNS query for a peer's name -> answer with the tunnel up,
# 100 set-ups over the 10 initiators (root; brings the lab up and down). bench-out/.
bench-setup:
	@scripts/ensure-packages.sh $(LAB_PACKAGES) bc
	$(RELEASE_BUILD)
	bash bench/setup.sh

# The same tunnel relayed (trs-relay) and direct in one run: TCP, idle and loaded RTT, relay
# CPU per GB, out-of-order datagrams (root; brings the NAT lab up and down). bench-out/.
bench-relay:
	@scripts/ensure-packages.sh $(LAB_PACKAGES) bc
	$(RELEASE_BUILD)
	bash bench/relay.sh

# NMS capacity: 100 000 simulated nodes registered over real UDP and Noise sessions,
# then direction requests per second and registration memory per node.
bench-nms:
	$(RELEASE_BUILD)
	./.build/release/cyphonic-bench nms

# The same with NMS replicas sharing a PostgreSQL directory (a throwaway cluster; root):
# nodes sharded i mod N, directions between random pairs (most across replicas), and
# PostgreSQL's load. NMS_PRELOAD=900000 adds simulated registrations to the directory
# (the 1 M run of docs/scale.md).
NMS_REPLICAS ?= 2
NMS_NODES ?= 100000
NMS_PRELOAD ?= 0
bench-nms-replicas:
	@scripts/ensure-packages.sh $(BUILD_PACKAGES) postgresql
	$(RELEASE_BUILD)
	scripts/with-postgres.sh ./.build/release/cyphonic-bench nms --replicas $(NMS_REPLICAS) --nodes $(NMS_NODES) --directory-preload $(NMS_PRELOAD)

# The lab (DESIGN §6, lab/README.md): as-server, nms-server and trs-relay in cy-cloud,
# 1 responder and 10 initiators that reach each other by name through the NMS and their
# resolvers (root). `make lab-up SCENARIO=nat` adds NAT routers, their LANs and a v4-only
# and a v6-only island, one node pair per route of DESIGN §5. `SCENARIO=ha`: the cloud as
# replicas (PostgreSQL, 2 AS, 2 NMS, 2 relays, each in its own namespace) and a relayed pair.
# PROMETHEUS=1 also starts Prometheus in cy-cloud, scraping every daemon, browsable at
# 127.0.0.1:9090 on this host until lab-down.
SCENARIO ?=
PROMETHEUS ?=
LAB_PACKAGES = $(BUILD_PACKAGES) iproute2 nftables iperf3 iputils-ping dnsutils procps python3 libc-bin curl
lab-up:
	@[ "$$(id -u)" -eq 0 ] || { echo "lab-up needs root (network namespaces, TUN)"; exit 1; }
	@scripts/ensure-packages.sh $(LAB_PACKAGES) $(if $(PROMETHEUS),prometheus socat) $(if $(filter ha,$(SCENARIO)),postgresql)
	$(RELEASE_BUILD)
	@SCENARIO=$(SCENARIO) PROMETHEUS=$(PROMETHEUS) lab/lab.sh up

# The paper's evaluation (Figs. 5-8) in the lab, with raw veth, wireguard-go and Nebula in
# the same run, Prometheus scraping, simulated peers and the pipeline bench: CSV, PNG plots
# and lab/results/REPORT.md (lab/eval.sh; EVAL_QUICK=1 for a short pass; root).
lab-eval:
	@[ "$$(id -u)" -eq 0 ] || { echo "lab-eval needs root (network namespaces, TUN)"; exit 1; }
	@scripts/ensure-packages.sh $(LAB_PACKAGES) bc prometheus socat wireguard-go wireguard-tools nebula python3-venv
	$(RELEASE_BUILD)
	@lab/eval.sh

# The pipeline's stages alone (staging, crypto workers, in-order release) between an
# in-process source and sink: single vs multi with 1 and 2 workers, 64/512/1400 bytes.
bench-pipeline:
	$(RELEASE_BUILD) --product cyphonic-bench
	./.build/release/cyphonic-bench pipeline

lab-down:
	@lab/lab.sh down

lab-status:
	@lab/lab.sh status

# The lab end to end: names, IPv4/IPv6, getent/dig, iperf3, NXDOMAIN, NMS and node restarts.
lab-smoke:
	@[ "$$(id -u)" -eq 0 ] || { echo "lab-smoke needs root (network namespaces, TUN)"; exit 1; }
	@scripts/ensure-packages.sh $(LAB_PACKAGES)
	$(RELEASE_BUILD)
	@lab/smoke.sh

# The NAT scenario end to end: every route of DESIGN §5 (direct, local, punched, relay),
# iperf3 through the relay, v4-only <-> v6-only, a TRS restart, relay <-> direct switches.
lab-smoke-nat:
	@[ "$$(id -u)" -eq 0 ] || { echo "lab-smoke-nat needs root (network namespaces, TUN)"; exit 1; }
	@scripts/ensure-packages.sh $(LAB_PACKAGES)
	$(RELEASE_BUILD)
	@lab/smoke-nat.sh

# The HA scenario end to end (lab/smoke-ha.sh): PostgreSQL, 2 AS, 2 NMS replicas and 2
# relays in namespaces of their own; one of each killed with kill -9 while pings run.
lab-smoke-ha:
	@[ "$$(id -u)" -eq 0 ] || { echo "lab-smoke-ha needs root (network namespaces, TUN)"; exit 1; }
	@scripts/ensure-packages.sh $(LAB_PACKAGES) postgresql
	$(RELEASE_BUILD)
	@lab/smoke-ha.sh

# One formatter for the tree (swift-format from the toolchain, config in .swift-format).
format:
	swift format format -i -r --parallel Sources Tests Benchmarks FuzzTesting Package.swift

format-check:
	@scripts/format-check.sh

clean:
	rm -rf .build FuzzTesting/.out
