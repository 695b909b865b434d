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
