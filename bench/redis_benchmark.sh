#!/usr/bin/env bash
# redis-benchmark against strata-server and redis-server, side by side in one run.
# Prints a markdown table of requests per second and the ratio strata / Redis.
# Usage: bench/redis_benchmark.sh [requests]   (needs redis-server and redis-tools)
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-200000}
strata_port=17001
redis_port=17002
work=$(mktemp -d)
trap 'redis-cli -p $strata_port shutdown >/dev/null 2>&1 || true;
      redis-cli -p $redis_port shutdown nosave >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

build/strata-server --port $strata_port --http-port 0 --dir "$work/strata" --memory 4gb >"$work/strata.log" 2>&1 &
redis-server --port $redis_port --save "" --appendonly no --maxmemory 4gb \
    --dir "$work" >"$work/redis.log" 2>&1 &
for port in $strata_port $redis_port; do
    for _ in $(seq 100); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.1; done
done

# rate PORT ARGS...: requests per second of each test, one "NAME RATE" per line.
rate() {
    local port=$1
    shift
    redis-benchmark -p "$port" -q "$@" | tr '\r' '\n' |
        sed -n 's/^\([A-Z]*\)[^:]*: \([0-9.]*\) requests per second.*/\1 \2/p'
}

echo "| workload | test | strata req/s | Redis req/s | strata / Redis |"
echo "|---|---|---|---|---|"
run() {
    local label=$1
    shift
    paste <(rate $strata_port "$@") <(rate $redis_port "$@") |
        while read -r name strata _ redis; do
            printf "| %s | %s | %.0f | %.0f | %.2f |\n" "$label" "$name" "$strata" "$redis" \
                "$(echo "$strata / $redis" | bc -l)"
        done
}
run "4 KiB values, 16 clients" -t set,get -d 4096 -c 16 -n "$requests"
run "3 B values, 16 clients, pipeline 16" -t set,get -c 16 -P 16 -n $((requests * 5))
run "256 KiB values, 4 clients" -t set,get -d 262144 -c 4 -n $((requests / 100))
