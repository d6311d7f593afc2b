# Echoes a request as JSON.
#
#   sluice test request_plugin --local examples/python/request_plugin.py \
#       --query 'name=sluice' --header 'Content-Type: application/json' --body '{"hello": "world"}'
import json


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    body = json.loads(request_body) if request_body else None
    influxdb3_local.info(f"request with {len(request_headers)} headers")
    return {"query": query_parameters, "body": body, "content_type": request_headers.get("content-type")}
