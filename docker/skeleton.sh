#!/bin/sh
# Writes the workspace's skeleton: every Cargo.toml and Cargo.lock as they are, and an empty stand-in for
# every target cargo finds in them (lib, bins, benches, examples, tests, build scripts; a lib.rs stays
# empty, any other file becomes `fn main() {}`).
#   docker/skeleton.sh SOURCE_DIR DEST_DIR
# The Dockerfile builds the node's dependencies from this skeleton, so that layer is reused until a
# manifest, the lock file or the set of targets changes (a new module changes nothing). The targets
# come from `cargo metadata` on the real sources, so whatever a manifest declares, its file exists in
# the skeleton. `cargo test -p flotilla --test docker_skeleton` checks that cargo accepts it.
set -eu
source_dir="${1:?usage: skeleton.sh SOURCE_DIR DEST_DIR}"
dest_dir="${2:?usage: skeleton.sh SOURCE_DIR DEST_DIR}"
mkdir -p "$dest_dir"
dest_dir="$(cd "$dest_dir" && pwd)"
cd "$source_dir"
source_dir="$(pwd -P)"

# Manifests and the lock file, wherever they are (build output and version control aside).
find . \( -name target -o -name 'target-*' -o -name .git \) -prune -o -type f \
  \( -name Cargo.toml -o -name Cargo.lock \) -print |
  while IFS= read -r file; do
    mkdir -p "$dest_dir/$(dirname "$file")"
    cp "$file" "$dest_dir/$file"
  done

# Every target's source file, as cargo resolves the manifests (explicit paths, and the files it
# discovers by itself). No registry access: only the workspace's own manifests are read.
metadata="$(cargo metadata --no-deps --offline --format-version 1 --manifest-path "$source_dir/Cargo.toml")"
targets="$(printf '%s' "$metadata" | grep -o '"src_path":"[^"]*"' | sed 's/^"src_path":"//; s/"$//')"
[ -n "$targets" ] || { echo "skeleton.sh: cargo metadata lists no targets" >&2; exit 1; }
printf '%s\n' "$targets" | sort -u | while IFS= read -r path; do
  case "$path" in
    "$source_dir"/*) relative="${path#"$source_dir"/}" ;;
    *) echo "skeleton.sh: target outside the workspace: $path" >&2; exit 1 ;;
  esac
  mkdir -p "$dest_dir/$(dirname "$relative")"
  case "$relative" in
    */lib.rs) : >"$dest_dir/$relative" ;;
    *) echo 'fn main() {}' >"$dest_dir/$relative" ;;
  esac
done
