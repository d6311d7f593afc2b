"""`examples/python/cpu_alert.py` written with requests, as the official library's
alerting plugins are: posts each `cpu` row over 90 to the trigger's `url` argument."""

import requests


def process_writes(influxdb3_local, table_batches, args=None):
    for batch in table_batches:
        for row in batch["rows"]:
            if row["usage"] > 90:
                response = requests.post(args["url"], json={"host": row["host"], "usage": row["usage"]}, timeout=5)
                response.raise_for_status()
                influxdb3_local.info(f"alert for {row['host']} sent: {response.status_code}")
