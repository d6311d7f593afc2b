# Writes `?lines=` rows (1 by default) to table `out` of its own database, batched, or
# with `?sync=1` at once, one write call per row.


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    lines = int(query_parameters.get("lines", "1"))
    for n in range(lines):
        row = LineBuilder("out").tag("i", str(n)).int64_field("n", n)
        if query_parameters.get("sync") == "1":
            influxdb3_local.write_sync(row, False)
        else:
            influxdb3_local.write(row)
    return {"written": lines}
