import time


def process_writes(influxdb3_local, table_batches, args=None):
    # About 2 ms of work, then a short sleep, for ever: no stretch of work is long, so
    # only CPU time added up over the whole call stops it.
    while True:
        end = time.monotonic() + 0.002
        while time.monotonic() < end:
            pass
        time.sleep(0.001)
