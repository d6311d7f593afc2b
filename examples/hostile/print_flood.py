def process_writes(influxdb3_local, table_batches, args=None):
    line = "x" * 1000
    for _ in range(20_000):
        print(line)
    influxdb3_local.info("still running after printing 20 MB")
