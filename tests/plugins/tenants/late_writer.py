# Writes one row to its own database after `?seconds=` seconds (2 by default), and says
# whether the host took it.
import time


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    time.sleep(float(query_parameters.get("seconds", "2")))
    try:
        influxdb3_local.write_sync(LineBuilder("late").int64_field("n", 1), False)
        return {"outcome": "written"}
    except Exception as e:
        return {"outcome": "refused", "error": str(e)}
