def process_writes(influxdb3_local, table_batches, args=None):
    while True:
        influxdb3_local.info("flood")
