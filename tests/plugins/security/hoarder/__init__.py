"""Opens its own file again and again and keeps every file open in the module, which
lives as long as the instance: `?count=N` more each call."""

import json

HELD = []


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    opened = 0
    error = None
    for _ in range(int(query_parameters["count"])):
        try:
            HELD.append(open(__file__, "rb"))
            opened += 1
        except OSError as e:
            error = f"{type(e).__name__}: {e}"
            break
    return json.dumps({"opened": opened, "held": len(HELD), "error": error})
