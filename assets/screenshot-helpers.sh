# shellcheck shell=sh
# Helpers the screenshot scripts source (a 1280x800 window under Xvfb, driven with xdotool).

# Prints the id of the node that answers as leader among COUNT nodes on consecutive ports from PORT.
leader() {
    first_port=$1
    count=$2
    n=1
    while [ "$n" -le "$count" ]; do
        if curl -s --max-time 1 "http://127.0.0.1:$((first_port + n - 1))/v1/status" | grep -q '"role":"leader"'; then
            echo "$n"
            return
        fi
        n=$((n + 1))
    done
}

# Types a message into the top bar's field (at x = SUBMIT_X, default 620) and submits it.
submit() {
    xdotool mousemove "${SUBMIT_X:-620}" 12 click 1
    xdotool type --delay 20 "$1"
    xdotool key Return
}

# The x of the panels' separator lines just below the top bar: the ring's panel ends at the first,
# the side panel starts at the second. The panels widen with their longest row (an event's text), so
# every click is placed from these, measured just before the click.
separators() {
    import -window root -crop 800x1+300+54 -depth 8 txt:- |
        awk '/#3C3C3C/ { split($1, at, /[,:]/); print at[1] + 300 }'
}
panel_left() { separators | tail -n1; }

# Where the ring draws node N of 5: a fixed pentagon around the middle of the ring's panel.
node_xy() {
    middle=$(($(separators | head -n1) / 2 - 2))
    case $1 in
    1) echo "$middle" 122 ;; 2) echo $((middle + 153)) 234 ;; 3) echo $((middle + 95)) 411 ;;
    4) echo $((middle - 93)) 411 ;; 5) echo $((middle - 152)) 234 ;;
    esac
}

# Selects node N with its button in the side panel's "Node" row.
select_node() {
    xdotool mousemove $(($(panel_left) + 36 + ($1 - 1) * 64)) 85 click 1
    sleep 0.5
}

# The middle y of each row of buttons in a column of the side panel, from Y down to the next
# section's separator line (#3C3C3C); a button is filled #323232 (or #262626 when disabled).
button_rows() {
    import -window root -crop 1x500+"$1"+"$2" -depth 8 txt:- | awk -v top="$2" '
        { split($1, at, /[,:]/); y = at[2] + top; c = $3 }
        c == "#3C3C3C" && y > top + 2 { exit }
        (c == "#323232" || c == "#262626") && prev != "#323232" && prev != "#262626" { print y + 9 }
        { prev = c }'
}

# Clicks the selected node's action: kill (first row), isolate (the end of the first row when the
# panel is wide enough for it, else the start of the second) or wipe (third row). The rows move down when the node's panel says more
# (an "isolated from" line), so they are measured.
node_action() {
    left=$(panel_left)
    rows=$(button_rows $((left + 12)) 95)
    row() { echo "$rows" | sed -n "${1}p"; }
    case $1 in
    kill) xdotool mousemove $((left + 46)) "$(row 1)" click 1 ;;
    isolate)
        # A button 470 px in, level with the first row (give or take its anti-aliased edge).
        end=$(button_rows $((left + 470)) 95 2>/dev/null | head -n1)
        if [ -n "$end" ] && [ $((end - $(row 1))) -le 3 ] && [ $(($(row 1) - end)) -le 3 ]; then
            xdotool mousemove $((left + 470)) "$(row 1)" click 1
        else
            xdotool mousemove $((left + 56)) "$(row 2)" click 1
        fi
        ;;
    wipe) xdotool mousemove $((left + 100)) "$(row 3)" click 1 ;;
    esac
    xdotool mousemove 700 20 # away from the buttons, so no hover text covers the picture
}

# Clicks a preset of the "Faults" section's first row (one-way, flaky). Its height depends on what
# the node section above it shows, so it is measured.
fault_button() {
    left=$(panel_left)
    # The "Faults" section starts below the node section's separator line.
    line=$(import -window root -crop 1x400+$((left + 12))+100 -depth 8 txt:- |
        awk '$3 == "#3C3C3C" { split($1, at, /[,:]/); print at[2] + 100; exit }')
    top=$(button_rows $((left + 12)) "$line" | head -n1)
    case $1 in
    one-way) xdotool mousemove $((left + 59)) "$top" click 1 ;;
    flaky) xdotool mousemove $((left + 251)) "$top" click 1 ;;
    esac
    xdotool mousemove 700 20
}

# Waits (up to 30 s) until a node other than $3 answers as leader among COUNT nodes from PORT.
wait_new_leader() {
    tries=0
    while [ "$tries" -lt 120 ]; do
        now=$(leader "$1" "$2")
        if [ -n "$now" ] && [ "$now" != "$3" ]; then
            echo "$now"
            return
        fi
        sleep 0.25
        tries=$((tries + 1))
    done
}
