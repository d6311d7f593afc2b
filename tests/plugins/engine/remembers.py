# What the trigger's own cache and its database's shared cache held before this call;
# then both hold "earlier", and the call logs a line.
def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    seen = {
        "own": influxdb3_local.cache.get("k"),
        "shared": influxdb3_local.cache.get("k", use_global=True),
    }
    influxdb3_local.cache.put("k", "earlier")
    influxdb3_local.cache.put("k", "earlier", use_global=True)
    influxdb3_local.info("remembered")
    return seen
