"""Fetches `?url=` with urllib.request (`?times=` times, 1 by default) and answers what
came back the last time, or the exception the plugin got."""

import urllib.request


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    url = query_parameters["url"]
    timeout = float(query_parameters.get("timeout", "30"))
    try:
        for _ in range(int(query_parameters.get("times", "1"))):
            with urllib.request.urlopen(url, timeout=timeout) as response:
                answer = {"status": response.status, "body": response.read().decode()}
        return answer
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"}
