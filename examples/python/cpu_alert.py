# Posts an alert to a notification endpoint for each `cpu` row whose `usage` is over
# the `threshold` argument (90 by default), as the official library's alerting plugins
# do. `url` is where: here the `notify` request trigger of the same server. The trigger
# must be granted the destination (`--allow-host localhost:8181`, within the server's
# `--egress-allow`); the host sends the request. `requests` works the same once
# installed (`sluice install package requests`).
#
#   sluice create trigger -d mydb cpu_alert --trigger-spec table:cpu --path cpu_alert.py \
#       --trigger-arguments url=http://localhost:8181/api/v3/engine/notify \
#       --allow-host localhost:8181
import json
import urllib.request


def process_writes(influxdb3_local, table_batches, args=None):
    threshold = float((args or {}).get("threshold", 90))
    for batch in table_batches:
        for row in batch["rows"]:
            if row.get("usage") is None or row["usage"] <= threshold:
                continue
            alert = json.dumps({"host": row.get("host"), "usage": row["usage"]}).encode()
            request = urllib.request.Request(
                args["url"], data=alert, headers={"Content-Type": "application/json"}, method="POST"
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                influxdb3_local.info(f"alert for {row.get('host')} sent: {response.status}")
