def process_scheduled_call(influxdb3_local, call_time, args=None):
    influxdb3_local.write(LineBuilder("ticks").int64_field("n", 1))
    influxdb3_local.info("beta tick")
