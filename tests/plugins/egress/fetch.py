"""Fetches `?url=` with urllib.request (`?times=` times, 1 by default; a POST of
`?post_bytes=` bytes if given) and answers what came back the last time, or the
exception the plugin got."""

import urllib.request


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    url = query_parameters["url"]
    timeout = float(query_parameters.get("timeout", "30"))
    post_bytes = query_parameters.get("post_bytes")
    body = b"x" * int(post_bytes) if post_bytes is not None else None
    try:
        for _ in range(int(query_parameters.get("times", "1"))):
            with urllib.request.urlopen(url, data=body, timeout=timeout) as response:
                answer = {"status": response.status, "body": response.read().decode()}
        return answer
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"}
