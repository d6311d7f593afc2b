# Answers after `?seconds=` seconds (1 by default): a call that holds its turn a while.
import time


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    time.sleep(float(query_parameters.get("seconds", "1")))
    return {"slept": True}
