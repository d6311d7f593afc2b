"""`fetch.py` with httpx, following redirects: fetches `?url=` and answers what came
back, or the exception the plugin got."""

import httpx


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    try:
        with httpx.Client(follow_redirects=True, timeout=30) as client:
            response = client.get(query_parameters["url"])
        return {"status": response.status_code, "body": response.text}
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"}
