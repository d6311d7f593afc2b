import json


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    rows = influxdb3_local.query("SELECT count(*) AS n FROM events")
    return json.dumps({"events": rows[0]["n"]})
