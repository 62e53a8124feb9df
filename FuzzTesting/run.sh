#!/usr/bin/env bash
# Builds the libFuzzer targets (swiftc -sanitize=fuzzer,address) over the library
# sources and runs each for FUZZ_RUNS executions (default 10^6) or FUZZ_SECONDS.
# A crash stops the run; the crashing input is copied to FuzzTesting/crashes/ so it can
# be turned into a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=FuzzTesting/.out
RUNS=${FUZZ_RUNS:-1000000}
SECONDS_LIMIT=${FUZZ_SECONDS:-600}
TARGETS=${FUZZ_TARGETS:-"datagram noise certificate tunoffload dns config"}
mkdir -p "$OUT" FuzzTesting/crashes
FLAGS=(-sanitize=fuzzer,address -parse-as-library -O -g -package-name cyphonic_swift -swift-version 6
       -I "$OUT" -I Sources/CCyphonicOpenSSL)

module() { # name, sources...
  local name=$1; shift
  echo "fuzz: compiling $name"
  swiftc "${FLAGS[@]}" -emit-library -static -emit-module -module-name "$name" \
    -emit-module-path "$OUT/$name.swiftmodule" -o "$OUT/lib$name.a" "$@" >"$OUT/build-$name.log" 2>&1 \
    || { cat "$OUT/build-$name.log"; exit 1; }
}
module CyphonicCore Sources/CyphonicCore/*.swift
module CyphonicWire Sources/CyphonicWire/*.swift
module CyphonicCrypto Sources/CyphonicCrypto/*.swift Sources/CyphonicCrypto/Noise/*.swift
module CyphonicPKI Sources/CyphonicPKI/*.swift
module CyphonicDNS Sources/CyphonicDNS/*.swift

target() { # short name, Swift file, libraries...
  local name=$1 file=$2; shift 2
  echo "fuzz: linking fuzz-$name"
  # ld.gold warns about every ASan helper symbol; the log keeps them, failures print it.
  swiftc "${FLAGS[@]}" "$file" -L "$OUT" "$@" -lcrypto -o "$OUT/fuzz-$name" >"$OUT/link-$name.log" 2>&1 \
    || { cat "$OUT/link-$name.log"; exit 1; }
}
target datagram FuzzTesting/Targets/FuzzDatagram.swift -lCyphonicWire -lCyphonicCore
target noise FuzzTesting/Targets/FuzzNoise.swift -lCyphonicCrypto -lCyphonicCore
target certificate FuzzTesting/Targets/FuzzCertificate.swift -lCyphonicPKI -lCyphonicCrypto -lCyphonicCore
target dns FuzzTesting/Targets/FuzzDNS.swift -lCyphonicDNS
target config FuzzTesting/Targets/FuzzConfig.swift -lCyphonicCore
echo "fuzz: linking fuzz-tunoffload"
swiftc "${FLAGS[@]}" FuzzTesting/Targets/FuzzTunOffload.swift Sources/CyphonicDataPlane/TunOffload.swift Sources/CyphonicDataPlane/TunCoalescer.swift \
  -o "$OUT/fuzz-tunoffload" >"$OUT/link-tunoffload.log" 2>&1 || { cat "$OUT/link-tunoffload.log"; exit 1; }

# Seeds: committed ones, DNS queries written here, plus a certificate and a CRL made by the openssl tool.
mkdir -p "$OUT/corpus-datagram" "$OUT/corpus-noise" "$OUT/corpus-certificate" "$OUT/corpus-tunoffload" "$OUT/corpus-dns" "$OUT/corpus-config"
cp examples/*.json "$OUT/corpus-config/"
cp FuzzTesting/seeds/datagram/* "$OUT/corpus-datagram/" 2>/dev/null || true
cp Tests/CyphonicWireTests/Regressions/* "$OUT/corpus-datagram/" 2>/dev/null || true
# DNS: dig's `responder.cyphonic.internal A` (EDNS 1232, COOKIE option), glibc's mixed-case AAAA
# without OPT, and that AAAA query TCP-framed.
dig_a='\x8f\x3a\x01\x20\x00\x01\x00\x00\x00\x00\x00\x01\x09responder\x08cyphonic\x08internal\x00\x00\x01\x00\x01'
dig_a+='\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x0c\x00\x0a\x00\x08\x5b\x1e\x94\x27\xc3\x0d\x71\xe2'
glibc_aaaa='\x4d\x21\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x06NoDe01\x08cyphonic\x08internal\x00\x00\x1c\x00\x01'
printf "$dig_a" >"$OUT/corpus-dns/seed-dig-a"
printf "$glibc_aaaa" >"$OUT/corpus-dns/seed-glibc-aaaa"
printf "\x00\x2a$glibc_aaaa" >"$OUT/corpus-dns/seed-tcp-aaaa"
if command -v openssl >/dev/null; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  openssl req -x509 -newkey ed25519 -nodes -keyout "$tmp/k" -subj "/O=CYPHONIC/OU=node/CN=init01.cyphonic.internal" \
    -addext "subjectAltName=DNS:init01.cyphonic.internal,IP:198.18.0.1" -outform DER \
    -out "$OUT/corpus-certificate/seed-cert.der" 2>/dev/null || true
fi

# Swift's own crash backtracer confuses ASan's report; libFuzzer prints the stack.
export SWIFT_BACKTRACE=enable=no
status=0
for t in $TARGETS; do
  echo "fuzz: running fuzz-$t for $RUNS executions (at most ${SECONDS_LIMIT}s)"
  log="$OUT/fuzz-$t.log"
  if ! "$OUT/fuzz-$t" -runs="$RUNS" -max_total_time="$SECONDS_LIMIT" -print_final_stats=1 \
       -artifact_prefix="FuzzTesting/crashes/$t-" "$OUT/corpus-$t" >"$log" 2>&1; then
    echo "fuzz: fuzz-$t FOUND A CRASH (see $log and FuzzTesting/crashes/)"; tail -30 "$log"; status=1
  fi
  runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  echo "fuzz: fuzz-$t executed ${runs:-?} inputs, $(grep -c 'ERROR' "$log" || true) errors"
done
exit $status
