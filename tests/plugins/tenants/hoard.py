# Puts `?bytes=` bytes in the trigger's own cache (the shared one with `?shared=1`), and
# says whether the host took them.
def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    size = int(query_parameters["bytes"])
    shared = query_parameters.get("shared") == "1"
    try:
        influxdb3_local.cache.put(query_parameters.get("key", "k"), "x" * size, use_global=shared)
        return {"outcome": "stored"}
    except Exception as e:
        return {"outcome": "refused", "error": str(e)}
