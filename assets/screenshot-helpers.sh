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

# Clicks the selected node's action: kill (first row) or wipe (third row).
node_action() {
    left=$(panel_left)
    case $1 in
    kill) xdotool mousemove $((left + 46)) 141 click 1 ;;
    wipe) xdotool mousemove $((left + 100)) 187 click 1 ;;
    esac
    xdotool mousemove 700 20 # away from the buttons, so no hover text covers the picture
}

# Clicks a button of the "Faults" section (one-way, flaky, slow-disk, heal). Its height depends on
# what the node section above it shows, so it is found: the first button below the section's
# separator line in a column just inside the panel.
fault_button() {
    left=$(panel_left)
    top=$(import -window root -crop 1x400+$((left + 12))+100 -depth 8 txt:- | awk '
        { split($1, at, /[,:]/); y = at[2] + 100; c = $3 }
        c == "#3C3C3C" && !seen { seen = 1 }
        seen && (c == "#323232" || c == "#262626") && prev != "#323232" && prev != "#262626" {
            print y; exit
        }
        { prev = c }')
    case $1 in
    one-way) xdotool mousemove $((left + 59)) $((top + 9)) click 1 ;;
    flaky) xdotool mousemove $((left + 251)) $((top + 9)) click 1 ;;
    slow-disk) xdotool mousemove $((left + 382)) $((top + 9)) click 1 ;;
    heal) xdotool mousemove $((left + 80)) $((top + 32)) click 1 ;;
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
