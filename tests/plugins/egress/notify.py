"""Receives an alert as JSON and writes it to the `alerts` table."""

import json


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    alert = json.loads(request_body)
    influxdb3_local.write(
        LineBuilder("alerts").tag("host", alert["host"]).float64_field("usage", alert["usage"])
    )
    return {"received": True}
