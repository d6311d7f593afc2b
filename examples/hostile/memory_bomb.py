def process_writes(influxdb3_local, table_batches, args=None):
    hoard = []
    while True:
        hoard.append(bytearray(8 * 1024 * 1024))
