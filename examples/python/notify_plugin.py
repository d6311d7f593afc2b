# A notification endpoint: takes an alert posted as JSON (`{"host": …, "usage": …}`) and
# writes it to the `alerts` table. `cpu_alert.py` posts to it.
#
#   sluice create trigger -d mydb notify --trigger-spec request:notify --path notify_plugin.py
import json


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    alert = json.loads(request_body)
    influxdb3_local.write(
        LineBuilder("alerts").tag("host", str(alert["host"])).float64_field("usage", alert["usage"])
    )
    return {"received": True}
