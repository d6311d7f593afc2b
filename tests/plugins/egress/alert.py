"""Posts an alert for each `cpu` row over 90 with urllib.request, to the URL in the
trigger's `url` argument, as the official library's alerting plugins do with requests."""

import json
import urllib.request


def process_writes(influxdb3_local, table_batches, args=None):
    for batch in table_batches:
        for row in batch["rows"]:
            if row["usage"] <= 90:
                continue
            alert = json.dumps({"host": row["host"], "usage": row["usage"]}).encode()
            request = urllib.request.Request(
                args["url"], data=alert, headers={"Content-Type": "application/json"}, method="POST"
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                influxdb3_local.info(f"alert for {row['host']} sent: {response.status}")
