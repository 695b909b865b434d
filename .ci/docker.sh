# shellcheck shell=bash
# Docker engine for the Docker end-to-end tests. Source this file, then call `start_dockerd` (installs
# Debian's docker.io and docker-compose when missing, starts a private dockerd in the background and
# waits until it answers), `prepare_base_images` (local stand-ins for the base images docker/Dockerfile
# names, when they cannot be pulled), `start_image_build`/`wait_image_build` (the image, built while
# the workspace compiles) and, at the end, `stop_dockerd` (stops that dockerd by its PID).
#
# The daemon stays off the host's network setup: overlay2 storage, no default bridge, no iptables
# rules, no forwarding. Compose's own user-defined bridge network, service-name DNS and 127.0.0.1 port
# publishing still work; image builds use `--network host`. Its data root, exec root, pidfile and
# socket live in a temporary folder, so it never touches an engine the machine may already run.
# DOCKER_HOST points the docker CLI (and the tests) at it.

FLOTILLA_DOCKERD_DIR="${FLOTILLA_DOCKERD_DIR:-}"
FLOTILLA_DOCKERD_PID="${FLOTILLA_DOCKERD_PID:-}"

install_docker_packages() {
  local missing=()
  [ -x /usr/sbin/dockerd ] || command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  echo "docker.sh: installing ${missing[*]} from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Starts dockerd and exports DOCKER_HOST. Returns non-zero (with the daemon's log) if it does not come up
# within 60 seconds; the Docker tests then fail under CI=true and skip loudly elsewhere.
start_dockerd() {
  if [ "$(id -u)" != 0 ]; then
    echo "docker.sh: not root: cannot start a Docker engine; the Docker tests will skip (fail under CI=true)" >&2
    return 0
  fi
  install_docker_packages || { echo "docker.sh: installing Docker failed" >&2; return 1; }
  local dockerd_bin
  dockerd_bin="$(command -v dockerd || echo /usr/sbin/dockerd)"
  FLOTILLA_DOCKERD_DIR="$(mktemp -d /tmp/flotilla-dockerd.XXXXXX)"
  local dir="$FLOTILLA_DOCKERD_DIR"
  "$dockerd_bin" \
    --storage-driver=overlay2 \
    --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
    --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
    --host "unix://$dir/docker.sock" \
    >"$dir/dockerd.log" 2>&1 &
  FLOTILLA_DOCKERD_PID=$!
  export FLOTILLA_DOCKERD_DIR FLOTILLA_DOCKERD_PID
  export DOCKER_HOST="unix://$dir/docker.sock"
  local waited=0
  until docker info >/dev/null 2>&1; do
    if ! kill -0 "$FLOTILLA_DOCKERD_PID" 2>/dev/null || [ "$waited" -ge 120 ]; then
      echo "docker.sh: dockerd did not come up; its log:" >&2
      tail -n 30 "$dir/dockerd.log" >&2
      stop_dockerd
      unset DOCKER_HOST
      return 1
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  echo "docker.sh: dockerd $FLOTILLA_DOCKERD_PID ready at $DOCKER_HOST ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
}

# Makes sure the base images docker/Dockerfile names exist: pulled when the registry answers, else
# built here by docker/stand-in-images.sh (debootstrap plus this machine's Rust toolchain, about 2
# minutes; cached as tarballs for the next engine).
prepare_base_images() {
  [ -n "${DOCKER_HOST:-}" ] || { echo "docker.sh: no engine started: base images skipped" >&2; return 0; }
  local image missing=0
  for image in $(awk '$1 == "FROM" && $2 ~ /:/ { print $2 }' docker/Dockerfile | sort -u); do
    docker image inspect "$image" >/dev/null 2>&1 && continue
    timeout 60 docker pull -q "$image" >/dev/null 2>&1 || missing=1
  done
  if [ "$missing" = 1 ]; then
    bash docker/stand-in-images.sh
  fi
}

# Builds the unmodified docker/Dockerfile in the background while the workspace compiles, so the
# Docker test's own `docker build` finds every layer cached. `wait_image_build` waits for it; a failure
# is only reported here: the test builds again and fails with the build's output.
FLOTILLA_IMAGE_BUILD_PID=""
start_image_build() {
  [ -n "${DOCKER_HOST:-}" ] || return 0
  echo "docker.sh: building docker/Dockerfile in the background ($FLOTILLA_DOCKERD_DIR/image-build.log)"
  docker build --network host -f docker/Dockerfile -t flotilla-node:latest . \
    >"$FLOTILLA_DOCKERD_DIR/image-build.log" 2>&1 &
  FLOTILLA_IMAGE_BUILD_PID=$!
  FLOTILLA_IMAGE_BUILD_STARTED=$SECONDS
}

wait_image_build() {
  [ -n "$FLOTILLA_IMAGE_BUILD_PID" ] || return 0
  if wait "$FLOTILLA_IMAGE_BUILD_PID"; then
    echo "docker.sh: image built ($((SECONDS - FLOTILLA_IMAGE_BUILD_STARTED)) s since it started)"
  else
    echo "docker.sh: the image build failed; its last lines:" >&2
    tail -n 20 "$FLOTILLA_DOCKERD_DIR/image-build.log" >&2
  fi
  FLOTILLA_IMAGE_BUILD_PID=""
}

# Stops the dockerd started above (SIGTERM, then SIGKILL after 20 s) and removes its folder.
stop_dockerd() {
  local pid="${FLOTILLA_DOCKERD_PID:-}"
  if [ -n "${FLOTILLA_IMAGE_BUILD_PID:-}" ]; then
    kill "$FLOTILLA_IMAGE_BUILD_PID" 2>/dev/null || true
    FLOTILLA_IMAGE_BUILD_PID=""
  fi
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    # Containers the tests left behind go first, so their mounts are gone before the folder is removed.
    docker ps -aq 2>/dev/null | xargs -r docker rm -f >/dev/null 2>&1 || true
    kill -TERM "$pid" 2>/dev/null || true
    local waited=0
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 40 ]; do
      sleep 0.5
      waited=$((waited + 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  FLOTILLA_DOCKERD_PID=""
  if [ -n "${FLOTILLA_DOCKERD_DIR:-}" ] && [ -d "$FLOTILLA_DOCKERD_DIR" ]; then
    # dockerd leaves its network namespace mounted under the exec root: unmount (deepest first), then
    # remove the folder.
    awk -v dir="$FLOTILLA_DOCKERD_DIR/" 'index($2, dir) == 1 { print $2 }' /proc/mounts | sort -r |
      while read -r mount_point; do
        umount "$mount_point" 2>/dev/null || umount -l "$mount_point" 2>/dev/null || true
      done
    rm -rf "$FLOTILLA_DOCKERD_DIR" 2>/dev/null || true
  fi
  FLOTILLA_DOCKERD_DIR=""
}
