#!/usr/bin/env bash
# Builds sluice and starts a server on 127.0.0.1:8181 with the example plugins of
# examples/python wired to triggers on the database `mydb`:
#
#   wal_reports  all_tables      wal_plugin.py       counts each flush's rows per table
#   heartbeat    every:5s        schedule_plugin.py  writes a heartbeat row every 5 s
#   echo         request:echo    request_plugin.py   answers /api/v3/engine/echo
#   notify       request:notify  notify_plugin.py    writes the alerts posted to it to `alerts`
#   cpu_alert    table:cpu       cpu_alert.py        posts an alert to `notify` for cpu usage
#                                                    over 90, through the server's own API
#                                                    (granted: --allow-host localhost:8181)
#
# The server runs without authentication, for a machine of one's own; see README.md for
# tokens. Data goes to ./sluice-data (set SLUICE_DATA_DIR to move it). Ctrl-C stops it.
# The first build downloads the pinned CPython for WASI; the first start makes the Python
# runtime of it and compiles it, a few minutes (cached afterwards under ~/.cache/sluice).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p sluice
sluice=target/release/sluice
data=${SLUICE_DATA_DIR:-sluice-data}
mkdir -p "$data"
rm -f "$data/address"

# Plugins may send HTTP requests only within --egress-allow: here, to this server.
"$sluice" serve --data-dir "$data" --plugin-dir examples/python --without-auth \
    --egress-allow localhost:8181 --tcp-listener-file-path "$data/address" "$@" &
server=$!
trap 'kill "$server" 2>/dev/null' EXIT INT TERM

echo "waiting for the server (the first start compiles the Python runtime)..."
until [ -s "$data/address" ]; do
    if ! kill -0 "$server" 2>/dev/null; then
        echo "the server did not start" >&2
        exit 1
    fi
    sleep 0.2
done
host="http://$(cat "$data/address")"

if "$sluice" create database mydb --host "$host" >/dev/null 2>&1; then
    "$sluice" create trigger -d mydb --host "$host" wal_reports --trigger-spec all_tables \
        --path wal_plugin.py --trigger-arguments double_count_table=cpu
    "$sluice" create trigger -d mydb --host "$host" heartbeat --trigger-spec every:5s \
        --path schedule_plugin.py --trigger-arguments region=us-east
    "$sluice" create trigger -d mydb --host "$host" echo --trigger-spec request:echo \
        --path request_plugin.py
    "$sluice" create trigger -d mydb --host "$host" notify --trigger-spec request:notify \
        --path notify_plugin.py
    "$sluice" create trigger -d mydb --host "$host" cpu_alert --trigger-spec table:cpu \
        --path cpu_alert.py --trigger-arguments url=http://localhost:8181/api/v3/engine/notify \
        --allow-host localhost:8181
fi

cat <<MSG

Sluice is serving $host with the example triggers on database mydb. Try:

  $sluice write -d mydb 'cpu,host=a usage=0.5'
  $sluice write -d mydb 'cpu,host=b usage=97'
  $sluice query -d mydb 'SELECT * FROM alerts'
  $sluice query -d mydb 'SELECT * FROM write_reports'
  $sluice query -d mydb 'SELECT * FROM heartbeat ORDER BY time DESC LIMIT 3'
  curl '$host/api/v3/engine/echo?name=sluice'
  $sluice query -d mydb 'SELECT * FROM system.processing_engine_triggers'

Ctrl-C stops the server.
MSG
wait "$server"
