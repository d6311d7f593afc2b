# Logs when it runs and keeps a run counter in the trigger's cache.
#
#   sluice test schedule_plugin --local examples/python/schedule_plugin.py \
#       --schedule '*/5 * * * * *' --input-arguments region=us-east
def process_scheduled_call(influxdb3_local, call_time, args=None):
    runs = influxdb3_local.cache.get("runs", default=0) + 1
    influxdb3_local.cache.put("runs", runs)
    influxdb3_local.info(f"called for {call_time.isoformat()} (run {runs}) with {args}")
    influxdb3_local.write(LineBuilder("heartbeat").tag("region", (args or {}).get("region", "none")).int64_field("run", runs))
