#!/usr/bin/env bash
# Local stand-ins for the two base images docker/Dockerfile names, for machines that cannot pull them
# (no registry access). Each carries the exact tag the Dockerfile's FROM lines name, so the Dockerfile
# builds unmodified:
#   debian:<suite>-slim         `debootstrap --variant=minbase <suite>` from this machine's Debian mirror
#   rust:<version>-slim-<suite> the same root filesystem plus gcc, libc6-dev and ca-certificates, this
#                               machine's Rust toolchain (without share/doc) in /usr/local/rust, cargo and
#                               rustc on PATH, and this machine's trusted CA bundle, so cargo inside
#                               reaches the registry exactly as it does here
# Needs root (debootstrap, chroot) and a running engine (DOCKER_HOST is honoured). Tags that already
# exist are left alone; the root filesystems are kept as tarballs in $FLOTILLA_STAND_IN_CACHE (default
# /var/cache/flotilla/stand-ins) so the next engine imports them in seconds. Usage:
#   docker/stand-in-images.sh            make whichever of the two tags is missing
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dockerfile="$here/Dockerfile"
cache="${FLOTILLA_STAND_IN_CACHE:-/var/cache/flotilla/stand-ins}"

say() { echo "stand-in-images: $*" >&2; }
die() { say "$*"; exit 1; }

rust_tag="$(awk '$1 == "FROM" && $2 ~ /^rust:/ { print $2; exit }' "$dockerfile")"
debian_tag="$(awk '$1 == "FROM" && $2 ~ /^debian:/ { print $2; exit }' "$dockerfile")"
[ -n "$rust_tag" ] && [ -n "$debian_tag" ] || die "no rust:/debian: FROM line in $dockerfile"
# rust:1.95-slim-bookworm → 1.95 and bookworm; debian:bookworm-slim → bookworm.
rust_version="${rust_tag#rust:}"
rust_version="${rust_version%%-*}"
suite="${debian_tag#debian:}"
suite="${suite%%-*}"
[ "${rust_tag##*-}" = "$suite" ] || die "$rust_tag and $debian_tag name different Debian releases"

has_image() { docker image inspect "$1" >/dev/null 2>&1; }
if has_image "$debian_tag" && has_image "$rust_tag"; then
  say "$debian_tag and $rust_tag exist: nothing to do"
  exit 0
fi

# The toolchain copied in must be the version the tag promises.
host_rustc="$(rustc -V 2>/dev/null || true)"
case "$host_rustc" in
  "rustc $rust_version."*) ;;
  *) die "$rust_tag needs Rust $rust_version.x here, but this machine has '${host_rustc:-no rustc}'" ;;
esac

# The Debian mirror this machine's apt uses (deb822 .sources or one-line lists), else Debian's own.
debian_mirror() {
  local uri
  uri="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }')"
  if [ -z "$uri" ]; then
    uri="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }')"
  fi
  echo "${FLOTILLA_DEBIAN_MIRROR:-${uri:-http://deb.debian.org/debian}}"
}

work=""
cleanup() {
  if [ -n "$work" ]; then
    for mount_point in "$work/rootfs/proc" "$work/rootfs/dev"; do
      mountpoint -q "$mount_point" 2>/dev/null && umount -l "$mount_point"
    done
    rm -rf "$work"
  fi
}
trap cleanup EXIT

debian_tar="$cache/debian-$suite-minbase.tar"
rust_tar="$cache/rust-$rust_version-$suite.tar"
mkdir -p "$cache"

if [ ! -s "$debian_tar" ] || [ ! -s "$rust_tar" ]; then
  [ "$(id -u)" = 0 ] || die "making the stand-ins needs root (debootstrap, chroot)"
  if ! command -v debootstrap >/dev/null 2>&1; then
    say "installing debootstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  work="$(mktemp -d /tmp/flotilla-stand-ins.XXXXXX)"
  rootfs="$work/rootfs"
  mirror="$(debian_mirror)"
  say "debootstrap --variant=minbase $suite from $mirror (about a minute)"
  debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -cf "$debian_tar.partial" . && mv "$debian_tar.partial" "$debian_tar"

  say "adding gcc, libc6-dev, ca-certificates and Rust $rust_version for $rust_tag"
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
  mount -t proc proc "$rootfs/proc"
  chroot "$rootfs" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
    'apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev ca-certificates' \
    >"$work/apt.log" 2>&1 || { tail -n 20 "$work/apt.log" >&2; die "installing the C toolchain failed"; }
  umount "$rootfs/proc"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  mkdir -p "$rootfs/usr/local/rust" "$rootfs/usr/local/cargo"
  tar -C "$(rustc --print sysroot)" --exclude=./share/doc -cf - . | tar -C "$rootfs/usr/local/rust" -xf -
  cp "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  tar -C "$rootfs" -cf "$rust_tar.partial" . && mv "$rust_tar.partial" "$rust_tar"
fi

if ! has_image "$debian_tag"; then
  say "importing $debian_tag"
  docker import --change 'CMD ["bash"]' "$debian_tar" "$debian_tag" >/dev/null
fi
if ! has_image "$rust_tag"; then
  say "importing $rust_tag"
  docker import \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'CMD ["bash"]' \
    "$rust_tar" "$rust_tag" >/dev/null
fi
say "ready: $debian_tag, $rust_tag"
