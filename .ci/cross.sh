#!/usr/bin/env bash
# The desktop and the node on macOS and Windows, proved on every CI run from this Linux machine:
# - macOS (aarch64-apple-darwin): `cargo clippy` (a `cargo check` plus lints) of the whole workspace,
#   all targets. C code (bundled SQLite, mimalloc) is compiled by zig's clang; nothing is linked (no
#   Apple linker or SDK here).
# - Windows (x86_64-pc-windows-gnu): the app and the node are linted, built and linked with mingw-w64,
#   then run under Wine: a node smoke test (start it, GET /v1/status, stop it through its parent pipe),
#   the node's unit tests, and the desktop's unit, UI and process tests.
# Also checks that every crate's stated minimum Rust is true (.ci/rust_version.py).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MACOS=aarch64-apple-darwin
WINDOWS=x86_64-pc-windows-gnu

step() {
  echo "== cross: $1 ($(date -u +%H:%M:%S))"
}

install_cross_tools() {
  step "tools"
  rustup target add "$MACOS" "$WINDOWS"
  python3 -m ziglang version >/dev/null 2>&1 || python3 -m pip install --quiet ziglang
  if ! command -v x86_64-w64-mingw32-gcc >/dev/null || ! command -v wine >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
      --no-install-recommends gcc-mingw-w64-x86-64 wine wine64 >/dev/null
  fi
}

check_rust_version() {
  step "stated minimum Rust"
  python3 .ci/rust_version.py
}

check_macos() {
  step "cargo clippy --target $MACOS"
  CC_aarch64_apple_darwin="$PWD/.ci/zig-cc-macos" \
    CXX_aarch64_apple_darwin="$PWD/.ci/zig-cc-macos" \
    AR_aarch64_apple_darwin="$PWD/.ci/zig-ar" \
    cargo clippy --workspace --all-targets --target "$MACOS" -- -D warnings
}

build_windows() {
  step "cargo build --target $WINDOWS"
  cargo build -p flotilla -p flotilla-node --target "$WINDOWS"
  cargo clippy -p flotilla -p flotilla-node --all-targets --target "$WINDOWS" -- -D warnings
}

# Runs Windows programs under Wine, in a prefix of its own (removed at exit).
setup_wine() {
  step "Wine prefix"
  export WINEPREFIX="$CROSS_WINE_PREFIX" WINEDEBUG=-all
  export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
  wine cmd /c exit >/dev/null 2>&1 || true # creates the prefix
  # Rust's standard library needs bcryptprimitives.dll (Windows 10+), which Wine 8 lacks.
  x86_64-w64-mingw32-gcc -O2 -shared -o "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" \
    .ci/wine/bcryptprimitives.c -ladvapi32
}

test_windows_under_wine() {
  step "Windows tests under Wine"
  # Bounded: a Wine that hangs must fail the run, not stall it.
  timeout 900 cargo test --target "$WINDOWS" -p flotilla-node --lib
  # The desktop's own tests that need neither cargo nor Docker inside Wine.
  timeout 900 cargo test --target "$WINDOWS" -p flotilla --lib --test ui --test local_processes
}

smoke_test_windows_node() {
  step "Windows node smoke test under Wine"
  local dir port=17990 pid status
  dir=$(mktemp -d)
  local exe
  exe="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/$WINDOWS/debug/flotilla-node.exe"
  # The node's standard input is a FIFO this script holds open: closing it is the parent going away.
  mkfifo "$dir/stdin"
  wine "$exe" --id 1 --listen "127.0.0.1:$port" --data-dir "$(winepath -w "$dir")" --exit-with-parent \
    <"$dir/stdin" >"$dir/node.log" 2>&1 &
  pid=$!
  exec {parent}>"$dir/stdin"
  for _ in $(seq 1 120); do
    if status=$(curl -fsS "http://127.0.0.1:$port/v1/status" 2>/dev/null); then
      break
    fi
    sleep 0.5
  done
  echo "status: ${status:-none}"
  if [[ "${status:-}" != *'"id":1'* ]]; then
    cat "$dir/node.log"
    kill "$pid" 2>/dev/null || true
    echo "the Windows node did not answer /v1/status" >&2
    return 1
  fi
  exec {parent}>&-
  local stopped=no
  for _ in $(seq 1 40); do
    if ! kill -0 "$pid" 2>/dev/null; then
      stopped=yes
      break
    fi
    sleep 0.5
  done
  if [ "$stopped" != yes ]; then
    cat "$dir/node.log"
    kill "$pid" 2>/dev/null || true
    echo "the Windows node outlived its parent pipe" >&2
    return 1
  fi
  wait "$pid" || true
  grep -q "the parent is gone" "$dir/node.log" || {
    cat "$dir/node.log"
    echo "the Windows node stopped without noticing its parent pipe close" >&2
    return 1
  }
  rm -rf "$dir"
}

main() {
  install_cross_tools
  check_rust_version
  check_macos
  build_windows
  CROSS_WINE_PREFIX=$(mktemp -d)
  trap 'wineserver -k >/dev/null 2>&1 || true; rm -rf "$CROSS_WINE_PREFIX"' EXIT
  setup_wine
  smoke_test_windows_node
  test_windows_under_wine
  step "done"
}

main "$@"
