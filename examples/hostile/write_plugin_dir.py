# Every attempt must fail: what is mounted is read-only, and the plugin directory itself
# is not mounted at all. The plugin reports each attempt.


def attempt(path):
    try:
        with open(path, "w") as f:
            f.write("import os\n")
    except OSError as e:
        return f"{path}: refused ({type(e).__name__})"
    return f"{path}: WRITTEN"


def process_writes(influxdb3_local, table_batches, args=None):
    for path in ("/plugins/planted.py", "/plugins/.packages/planted.py"):
        influxdb3_local.info(attempt(path))
