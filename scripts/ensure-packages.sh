#!/usr/bin/env bash
# Installs the Debian packages a make target needs and this machine lacks, so that
# `make test` and `make lab-up` work on a fresh machine by themselves (as root).
# Usage: scripts/ensure-packages.sh PACKAGE...   Not root: lists what is missing and
# goes on (the build then fails with the compiler's message, and the namespace tests
# skip with theirs).
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-packages: missing ${missing[*]} (run as root to install them)" >&2
  exit 0
fi
echo "ensure-packages: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
