#!/bin/sh
# Writes the workspace's skeleton: every Cargo.toml and Cargo.lock as they are, and an empty stand-in for
# every Rust source file (lib.rs empty, any other file `fn main() {}`).
#   docker/skeleton.sh SOURCE_DIR DEST_DIR
# The Dockerfile builds the node's dependencies from this skeleton, so that layer is reused until a
# manifest or the lock file changes. Every target any manifest declares or cargo discovers (bins,
# benches, examples, tests) exists in the skeleton because every .rs file does: a new target cannot
# break the build. `cargo test -p flotilla-tests --test docker_skeleton` checks that cargo accepts it.
set -eu
source_dir="${1:?usage: skeleton.sh SOURCE_DIR DEST_DIR}"
dest_dir="${2:?usage: skeleton.sh SOURCE_DIR DEST_DIR}"
mkdir -p "$dest_dir"
dest_dir="$(cd "$dest_dir" && pwd)"
cd "$source_dir"
# Build output and version control are no part of the workspace.
find . \( -name target -o -name 'target-*' -o -name .git \) -prune -o -type f \
  \( -name Cargo.toml -o -name Cargo.lock -o -name '*.rs' \) -print |
  while IFS= read -r file; do
    mkdir -p "$dest_dir/$(dirname "$file")"
    case "$file" in
      */Cargo.toml | */Cargo.lock) cp "$file" "$dest_dir/$file" ;;
      */lib.rs) : >"$dest_dir/$file" ;;
      *) echo 'fn main() {}' >"$dest_dir/$file" ;;
    esac
  done
