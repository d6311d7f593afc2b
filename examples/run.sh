#!/usr/bin/env bash
# Builds sluice and runs each example plugin once, inside the sandbox, without a server.
# The first build downloads the pinned CPython for WASI; the first run makes the Python
# runtime of it and compiles it, a few minutes (cached afterwards under ~/.cache/sluice).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p sluice
sluice=target/release/sluice

run() {
    printf '\n$ sluice %s\n' "$*"
    "$sluice" "$@"
}

run test wal_plugin --local examples/python/wal_plugin.py -d mydb \
    --lp $'cpu,host=a usage=0.5\ncpu,host=b usage=0.7\nmem,host=a free=3i' \
    --input-arguments double_count_table=cpu
run test schedule_plugin --local examples/python/schedule_plugin.py \
    --schedule '*/5 * * * * *' --input-arguments region=us-east
run test request_plugin --local examples/python/request_plugin.py \
    --query 'name=sluice' --header 'Content-Type: application/json' --body '{"hello": "world"}'
run test wal_plugin --local examples/hostile/infinite_loop.py --lp 'm f=1i' --cpu-time 100ms
