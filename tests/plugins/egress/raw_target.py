"""Sends `GET ?target=` with http.client to `?host=`:`?port=`, whatever the target holds:
the request line of an attacker who wants it to name another destination."""

import http.client


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    connection = http.client.HTTPConnection(query_parameters["host"], int(query_parameters["port"]), timeout=5)
    try:
        connection.request("GET", query_parameters["target"])
        response = connection.getresponse()
        return {"status": response.status, "body": response.read().decode()}
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"}
