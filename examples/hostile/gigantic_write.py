class Huge:
    def build(self):
        return "big,n=1 v=1i\n" * 1_500_000  # about 20 MB


def process_writes(influxdb3_local, table_batches, args=None):
    influxdb3_local.write(Huge())
