# Runs for ever while the plugin is loaded, before any call reaches it.
while True:
    pass


def process_writes(influxdb3_local, table_batches, args=None):
    pass
