#!/usr/bin/env bash
# Fails, listing the files, when a Swift file is not as `swift format` (config:
# .swift-format at the root) would write it. `make format` rewrites them.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! swift format --version >/dev/null 2>&1; then
  echo "format-check: swift-format is not in this toolchain; skipped" >&2
  exit 0
fi
bad=0
while IFS= read -r f; do
  if ! swift format format "$f" | cmp -s - "$f"; then
    echo "not formatted: $f" >&2
    bad=1
  fi
done < <(git ls-files '*.swift' 2>/dev/null || find Sources Tests Benchmarks FuzzTesting -name '*.swift')
[ $bad -eq 0 ] || { echo "format-check: run 'make format'" >&2; exit 1; }
echo "format-check: every Swift file is formatted"
