#!/bin/sh
# Takes assets/docker-after-kill.png: the app under Xvfb (Debian `xvfb`, `xdotool`, ImageMagick's
# `import`) watching the root docker-compose.yml cluster, after messages were submitted and the
# leader's container was killed. Needs an engine with the flotilla-node:latest image (docker/README.md)
# and no Flotilla containers running; the cluster is taken down (with its volumes) afterwards.
#   cargo build --release -p flotilla && sh assets/docker-screenshot.sh [target/release/flotilla]
set -eu
APP=${1:-target/release/flotilla}
OUT=${OUT:-assets/docker-after-kill.png}
PROJECT=flotilla-screenshot
# The top bar names the containers, which pushes the message field right.
SUBMIT_X=785
DISPLAY_NUMBER=:78
WORK=$(mktemp -d)
export DISPLAY=$DISPLAY_NUMBER
if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"; else COMPOSE=docker-compose; fi

Xvfb "$DISPLAY_NUMBER" -screen 0 1280x800x24 -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
XVFB=$!
APP_PID=
cleanup() {
    [ -n "$APP_PID" ] && kill "$APP_PID" 2>/dev/null
    kill "$XVFB" 2>/dev/null
    $COMPOSE -p "$PROJECT" down -v -t 2 >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
sleep 1
# The window opens first: it waits for the containers and attaches when they are up.
"$APP" --docker --tempo 2 --close-after-secs 120 >"$WORK/app.log" 2>&1 &
APP_PID=$!
$COMPOSE -p "$PROJECT" up -d --no-build
sleep 15

# shellcheck source=assets/screenshot-helpers.sh
. "$(dirname "$0")/screenshot-helpers.sh"

xdotool windowfocus "$(xdotool search --name Flotilla | head -n1)"
for i in 1 2 3 4 5 6; do submit "order $i"; sleep 0.8; done
OLD=$(leader 6500 3)
docker kill "flotilla-node$OLD" >/dev/null
sleep 6
for i in 7 8 9 10; do submit "order $i"; sleep 0.9; done
sleep 0.4
import -window root "$OUT"
echo "leader node $OLD's container killed; wrote $OUT"
