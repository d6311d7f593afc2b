def process_writes(influxdb3_local, table_batches, args=None):
    rows = sum(len(batch["rows"]) for batch in table_batches)
    line = LineBuilder("events_seen").int64_field("rows", rows)
    influxdb3_local.write(line)
