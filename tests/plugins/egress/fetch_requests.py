"""`fetch.py` with requests: fetches `?url=` and answers what came back, or the exception
the plugin got."""

import requests


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    try:
        response = requests.get(query_parameters["url"], timeout=30)
        return {"status": response.status_code, "body": response.text}
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"}
