#!/usr/bin/env bash
# `make dist`: one tarball per program from the release build (Swift runtime linked
# statically, so a host needs only libssl3, libsqlite3-0 and, for the node, iproute2 and
# nftables): the binary, its commented example config, its hardened systemd unit (and for
# the services the sysusers and sysctl files), with dist/SHA256SUMS. Staging folders in
# .build/dist/PROGRAM are what docker/ builds its images from.
# Environment: BIN (default .build/release), OUT (default dist).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
umask 022   # the tarballs' modes do not depend on the builder's umask
BIN=${BIN:-.build/release}
OUT=${OUT:-dist}
STAGE=.build/dist
arch=$(uname -m)
for p in as-server nms-server trs-relay cyphonic-node; do
  [ -x "$BIN/$p" ] || { echo "dist: $BIN/$p missing (run make release)" >&2; exit 1; }
  # A binary that still needs the toolchain's libswiftCore.so would fail on the host.
  if ldd "$BIN/$p" | grep -q 'libswift\|libFoundation\|libdispatch'; then
    echo "dist: $BIN/$p links the Swift runtime dynamically (build with --static-swift-stdlib: make release)" >&2; exit 1
  fi
done
version=$("$BIN/as-server" --version | awk '{print $2}' | tr -d ,)
stamp=$(git log -1 --format=%ct 2>/dev/null || date +%s)
rm -rf "$STAGE" && mkdir -p "$STAGE" "$OUT"
for p in as-server nms-server trs-relay cyphonic-node; do
  d="$STAGE/$p"
  mkdir -p "$d/bin" "$d/examples" "$d/systemd"
  install -m 0755 "$BIN/$p" "$d/bin/$p"
  strip "$d/bin/$p"
  config=$([ "$p" = cyphonic-node ] && echo node.json || echo "$p.json")
  install -m 0644 "examples/$config" "$d/examples/$config"
  install -m 0644 "examples/systemd/$p.service" "$d/systemd/$p.service"
  if [ "$p" != cyphonic-node ]; then
    install -m 0644 examples/systemd/cyphonic.sysusers examples/systemd/cyphonic-sysctl.conf "$d/systemd/"
  fi
  [ "$p" = as-server ] && install -m 0755 examples/as-server-init.sh "$d/examples/"
  cat >"$d/INSTALL" <<TXT
$p $version ($arch, Linux; Swift runtime linked in)
Needs: libssl3$([ "$p" = as-server ] && echo ", libsqlite3-0")$([ "$p" = cyphonic-node ] && echo ", iproute2, nftables")
Install: see the comments at the top of systemd/$p.service, and docs/deploy.md.
Check a config without starting (once its paths point at your files): $p --check-config examples/$config
TXT
  # Reproducible: sorted names, root-owned, every time the last commit's.
  tar -C "$STAGE" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$stamp" -cf - "$p" | gzip -n >"$OUT/$p-$version-linux-$arch.tar.gz"
done
(cd "$OUT" && sha256sum ./*-"$version"-linux-"$arch".tar.gz | sed 's| \./| |' >SHA256SUMS)
echo "dist: $OUT/ ($version):"
(cd "$OUT" && ls -l ./*.tar.gz | awk '{printf "  %-45s %6.1f MiB\n", $9, $5/1048576}' && cat SHA256SUMS)
