# Opens files without end: first closing each (which must go on for ever), then keeping
# them (which must stop at the open files limit). Needs a file `data.txt` among the
# installed packages.
import errno

DATA = "/plugins/.packages/data.txt"


def process_writes(influxdb3_local, table_batches, args=None):
    for _ in range(1000):
        with open(DATA) as f:
            f.read()
    held = []
    try:
        while len(held) < 100_000:
            held.append(open(DATA))
    except OSError as e:
        influxdb3_local.info(f"held {len(held)}: {errno.errorcode.get(e.errno, e.errno)}")
