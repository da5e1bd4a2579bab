#!/usr/bin/env bash
# strata's own HTTP server against libmicrohttpd, in one run, on the two loads the
# choice in docs/dependencies.md rests on:
#   small: GET /health (12-byte body), wrk with 2 threads and 16 keep-alive connections
#   large: one 1 GiB response over one connection (curl to /dev/null), best of 3
# Both servers get the same number of threads. Prints a markdown table.
# Usage: bench/http_server_choice.sh [seconds]   (needs wrk, curl, libmicrohttpd-dev)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
size=$((1024 * 1024 * 1024))
threads=2
strata_port=17101
strata_http=17102
peer_port=17103
work=$(mktemp -d)
trap 'kill $strata_pid $peer_pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

build/strata-server --port $strata_port --http-port $strata_http --dir "$work/strata" \
    --memory 2gb --max-value 2gb --max-request 2gb --threads $threads >"$work/strata.log" 2>&1 &
strata_pid=$!
build/bench/http_microhttpd $peer_port $size $threads >"$work/peer.log" 2>&1 &
peer_pid=$!
for port in $strata_http $peer_port; do
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
done
# the same 1 GiB, stored in strata through its own HTTP PUT
truncate -s $size "$work/big"
curl -sf -T "$work/big" "http://127.0.0.1:$strata_http/keys/big" >/dev/null

small() { # requests per second
    wrk -t2 -c16 -d"${seconds}s" "http://127.0.0.1:$1/health" | awk '/Requests\/sec/ {print $2}'
}
large() { # MB/s, best of three
    local best=0
    for _ in 1 2 3; do
        speed=$(curl -s -o /dev/null -w '%{speed_download}' "$1")
        best=$(echo "if ($speed > $best) $speed else $best" | bc)
    done
    echo "$best / 1000000" | bc -l
}
strata_small=$(small $strata_http)
peer_small=$(small $peer_port)
strata_large=$(large "http://127.0.0.1:$strata_http/keys/big")
peer_large=$(large "http://127.0.0.1:$peer_port/big")
echo "| load | strata | libmicrohttpd 0.9.75 | strata / libmicrohttpd |"
echo "|---|---|---|---|"
printf "| small GET, 16 connections (requests/s) | %.0f | %.0f | %.2f |\n" "$strata_small" \
    "$peer_small" "$(echo "$strata_small / $peer_small" | bc -l)"
printf "| 1 GiB response, 1 connection (MB/s) | %.0f | %.0f | %.2f |\n" "$strata_large" \
    "$peer_large" "$(echo "$strata_large / $peer_large" | bc -l)"
