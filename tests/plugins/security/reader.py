"""Granted `beta`: reads what other triggers of `alpha` left in the shared cache."""

import json


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    try:
        value = influxdb3_local.cache.get("evil", use_global=True)
        return json.dumps({"outcome": "read", "value": repr(value)})
    except Exception as e:
        return json.dumps({"outcome": "refused", "error": f"{type(e).__name__}: {e}"})
