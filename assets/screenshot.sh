#!/bin/sh
# Takes the README's screenshots: the app under Xvfb (Debian `xvfb`, `xdotool`, ImageMagick's `import`),
# 5 local nodes at the default tempo, driven by clicks as a user would.
#   cargo build --release -p flotilla && sh assets/screenshot.sh [target/release/flotilla]
# SHOT picks the picture (1400x900; default `replication`, written to assets/screenshot.png; any other
# is written to assets/SHOT.png):
#   replication         submits, isolates a follower, kills the leader, shoots while the new one replicates
#   snapshot-transfer   small snapshots (SNAPSHOT_THRESHOLD=30), 40 submits, a follower's disk wiped:
#                       the leader's snapshot on its way and the follower's log starting with it
#   one-way-cut         the "One-way cut leader->follower" preset: the leader's dots die at the cut
#   slow-link           800 ms of delay on the leader's link to a follower (link editor), then submits
#   failover-stopwatch  the leader killed; the stopwatch's table once a new leader has committed
#   diagram-election    "Flaky network", then the leader killed; the diagram while the votes fly
#   checks-green        submits, a leader kill, more submits: every check holding on the real run
#   checks-red          a recording with a planted violation (RECORDING, else written by the
#                       `planted_recording` example through cargo) opened with --open
# OUT, PORT and DISPLAY_NUMBER override the output file, the first node port and the X display, so
# shots can be taken side by side.
set -eu
APP=${1:-target/release/flotilla}
SHOT=${SHOT:-replication}
if [ "$SHOT" = replication ]; then
    OUT=${OUT:-assets/screenshot.png}
else
    OUT=${OUT:-assets/$SHOT.png}
fi
SIZE=1400x900
PORT=${PORT:-18600}
DISPLAY_NUMBER=${DISPLAY_NUMBER:-:77}
WORK=$(mktemp -d)
export DISPLAY=$DISPLAY_NUMBER

Xvfb "$DISPLAY_NUMBER" -screen 0 "${SIZE}x24" -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
XVFB=$!
APP_PID=
trap 'kill $APP_PID $XVFB 2>/dev/null; rm -rf "$WORK"' EXIT
sleep 1
if [ "$SHOT" = checks-red ]; then
    if [ -z "${RECORDING:-}" ]; then
        RECORDING=$WORK/planted.ndjson.gz
        cargo run -q -p flotilla --example planted_recording -- "$RECORDING"
    fi
    "$APP" --open "$RECORDING" --close-after-secs 60 >"$WORK/app.log" 2>&1 &
else
    if [ "$SHOT" = snapshot-transfer ]; then
        # The nodes take it from the app's environment: snapshots after 30 entries.
        export SNAPSHOT_THRESHOLD=${SNAPSHOT_THRESHOLD:-30}
    fi
    "$APP" --nodes 5 --fresh --data-dir "$WORK/data" --first-port "$PORT" --close-after-secs 180 \
        >"$WORK/app.log" 2>&1 &
fi
APP_PID=$!
sleep 8

# shellcheck source=assets/screenshot-helpers.sh
. "$(dirname "$0")/screenshot-helpers.sh"

WINDOW=$(xdotool search --name Flotilla | head -n1)
xdotool windowsize "$WINDOW" "${SIZE%x*}" "${SIZE#*x}"
xdotool windowmove "$WINDOW" 0 0
xdotool windowfocus "$WINDOW"
sleep 1

submits() {
    for i in $(seq "$1" "$2"); do
        submit "order $i"
        sleep "${3:-0.8}"
    done
}

case $SHOT in
replication)
    submits 1 12
    OLD=$(leader "$PORT" 5)
    CUT=$((OLD % 5 + 1))
    select_node "$CUT"
    node_action isolate
    sleep 1
    select_node "$OLD"
    node_action kill
    sleep 5
    submits 13 18 0.9
    submit "order 19"
    sleep 0.4
    SAID="leader $OLD killed, node $CUT isolated"
    ;;
snapshot-transfer)
    submits 1 40 0.25
    sleep 2
    LEADER=$(leader "$PORT" 5)
    # A follower below the leader on the ring: the transfer's label, drawn at the receiver's rim,
    # then sits above that rim, clear of its disc.
    case $LEADER in
    1 | 2) WIPED=3 ;; 5) WIPED=4 ;; 3) WIPED=4 ;; 4) WIPED=3 ;;
    esac
    WIPED=${WIPED_NODE:-$WIPED}
    select_node "$WIPED"
    node_action wipe
    # Until the blank node answers with the leader's snapshot installed (it restarts first).
    tries=0
    until curl -s --max-time 1 "http://127.0.0.1:$((PORT + WIPED - 1))/v1/status" |
        grep -q '"snapshot_index":[1-9]' || [ "$tries" -ge 60 ]; do
        sleep 0.25
        tries=$((tries + 1))
    done
    # The transfer is one chunk; it stays drawn for 1.5 s after its last one, the view 150 ms behind.
    sleep "${SHOT_DELAY:-0.5}"
    SAID="node $WIPED wiped, leader $LEADER sends its snapshot"
    ;;
one-way-cut)
    submits 1 6
    LEADER=$(leader "$PORT" 5)
    CUT=$((LEADER % 5 + 1))
    select_node "$CUT"
    fault_button one-way
    sleep "${SHOT_DELAY:-3}"
    SAID="link $LEADER->$CUT cut"
    ;;
slow-link)
    LEADER=$(leader "$PORT" 5)
    SLOW=$((LEADER % 5 + 1))
    # The middle of the edge between two neighbours on the ring opens its editor.
    # shellcheck disable=SC2046
    set -- $(node_xy "$LEADER") $(node_xy "$SLOW")
    xdotool mousemove $((($1 + $3) / 2)) $((($2 + $4) / 2)) click 1
    sleep 1
    # The editor lists the lower-numbered node's direction first; the leader's is the one to slow.
    if [ "$LEADER" -lt "$SLOW" ]; then DELAY_Y=150 APPLY_Y=219; else DELAY_Y=298 APPLY_Y=366; fi
    xdotool mousemove 150 "$DELAY_Y" click 1
    sleep 0.3
    xdotool key ctrl+a
    xdotool type 800
    xdotool key Return
    sleep 0.3
    xdotool mousemove 60 "$APPLY_Y" click 1
    sleep 0.5
    xdotool mousemove 297 33 click 1 # close the editor: the ring shows the fault
    sleep 1
    submits 1 6 0.7
    sleep "${SHOT_DELAY:-0.5}"
    SAID="link $LEADER->$SLOW delayed 800 ms"
    ;;
failover-stopwatch)
    submits 1 6
    LEADER=$(leader "$PORT" 5)
    select_node "$LEADER"
    node_action kill
    NEW=$(wait_new_leader "$PORT" 5 "$LEADER")
    sleep "${SHOT_DELAY:-3}"
    SAID="leader $LEADER killed, node $NEW took over"
    ;;
diagram-election)
    submits 1 4
    fault_button flaky
    # Long enough for the faults' marks to leave the diagram's 5 s window.
    sleep 6
    LEADER=$(leader "$PORT" 5)
    select_node "$LEADER"
    node_action kill
    NEW=$(wait_new_leader "$PORT" 5 "$LEADER")
    # The view runs behind the cluster, more so while the votes' legs fly.
    sleep "${SHOT_DELAY:-1.2}"
    SAID="flaky network, leader $LEADER killed, node $NEW elected"
    ;;
checks-green)
    submits 1 10
    LEADER=$(leader "$PORT" 5)
    select_node "$LEADER"
    node_action kill
    NEW=$(wait_new_leader "$PORT" 5 "$LEADER")
    sleep 2
    submits 11 16
    sleep "${SHOT_DELAY:-1}"
    SAID="leader $LEADER killed, node $NEW took over, 16 submits"
    ;;
checks-red)
    # "Show" beside the first broken check: the view pauses at the first record involved.
    xdotool mousemove 945 154 click 1
    xdotool mousemove 700 20
    sleep "${SHOT_DELAY:-1}"
    SAID="planted recording $RECORDING"
    ;;
*)
    echo "screenshot.sh: unknown SHOT '$SHOT'" >&2
    exit 2
    ;;
esac
import -window root "$OUT"
echo "$SAID; wrote $OUT"
