#!/usr/bin/env bash
# Builds the test image from a flotilla-node binary built on this machine (no base image is pulled).
#   docker/build-scratch-image.sh [BINARY] [TAG]
# BINARY defaults to target/debug/flotilla-node, TAG to flotilla-node:scratch. A dynamically linked binary
# is copied together with every shared library `ldd` lists, at the same paths; for a static one build with
#   RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -p flotilla-node \
#     --target x86_64-unknown-linux-gnu --target-dir target-static
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
binary="${1:-$here/../target/debug/flotilla-node}"
tag="${2:-flotilla-node:scratch}"
if [ ! -x "$binary" ]; then
  echo "build-scratch-image.sh: no executable at $binary (cargo build -p flotilla-node first)" >&2
  exit 1
fi
context="$(mktemp -d /tmp/flotilla-image.XXXXXX)"
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/rootfs/usr/local/bin" "$context/data"
cp "$binary" "$context/rootfs/usr/local/bin/flotilla-node"
# ldd prints "name => /path (addr)" for libraries and "/path (addr)" for the loader; vdso has no file.
# A static binary makes ldd fail or print "statically linked": nothing to copy then.
if libs="$(ldd "$binary" 2>/dev/null)"; then
  for lib in $(printf '%s\n' "$libs" | grep -o '/[^ ]*' | sort -u); do
    mkdir -p "$context/rootfs$(dirname "$lib")"
    cp -L "$lib" "$context/rootfs$lib"
  done
fi
cp "$here/Dockerfile.scratch" "$context/Dockerfile"
docker build --quiet --tag "$tag" "$context" >/dev/null
echo "$tag"
