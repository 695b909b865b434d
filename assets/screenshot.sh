#!/bin/sh
# Takes assets/screenshot.png: the release app under Xvfb (Debian `xvfb`, `xdotool`, ImageMagick's
# `import`), 5 local nodes at the default tempo; submits messages, isolates a follower, kills the
# leader, submits again and shoots while the new leader replicates.
#   cargo build --release -p flotilla && sh assets/screenshot.sh [target/release/flotilla]
set -eu
APP=${1:-target/release/flotilla}
OUT=${OUT:-assets/screenshot.png}
PORT=18600
DISPLAY_NUMBER=:77
WORK=$(mktemp -d)
export DISPLAY=$DISPLAY_NUMBER

Xvfb "$DISPLAY_NUMBER" -screen 0 1280x800x24 -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
XVFB=$!
sleep 1
"$APP" --nodes 5 --fresh --data-dir "$WORK/data" --first-port "$PORT" --close-after-secs 120 \
    >"$WORK/app.log" 2>&1 &
APP_PID=$!
trap 'kill $APP_PID $XVFB 2>/dev/null; rm -rf "$WORK"' EXIT
sleep 8

# shellcheck source=assets/screenshot-helpers.sh
. "$(dirname "$0")/screenshot-helpers.sh"

# Where the ring draws node N in a 1280x800 window (5 nodes), the space-time diagram beside it.
node_xy() {
    case $1 in
    1) echo 255 120 ;; 2) echo 360 197 ;; 3) echo 320 320 ;; 4) echo 190 322 ;; 5) echo 150 197 ;;
    esac
}
xdotool windowfocus "$(xdotool search --name Flotilla | head -n1)"
for i in 1 2 3 4 5 6 7 8 9 10 11 12; do submit "order $i"; sleep 0.8; done

OLD=$(leader "$PORT" 5)
CUT=$((OLD % 5 + 1))
# shellcheck disable=SC2046
xdotool mousemove $(node_xy "$CUT") click 1
sleep 0.5
xdotool mousemove 1060 164 click 1 # "Isolate node N"
sleep 1
# shellcheck disable=SC2046
xdotool mousemove $(node_xy "$OLD") click 1
sleep 0.5
xdotool mousemove 940 159 click 1 # "Kill node N", below the leader's "isolated from" line
sleep 5
for i in 13 14 15 16 17 18; do submit "order $i"; sleep 0.9; done
submit "order 19"
sleep 0.4
import -window root "$OUT"
echo "leader $OLD killed, node $CUT isolated; wrote $OUT"
