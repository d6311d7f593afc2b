# Every attempt must fail; the plugin reports what it managed to read.
import os


def attempt(what, action):
    try:
        result = action()
    except Exception as e:
        return f"{what}: refused ({type(e).__name__})"
    return f"{what}: READ {result!r}"


def read(path):
    with open(path) as f:
        return f.read(64)


def process_writes(influxdb3_local, table_batches, args=None):
    for line in (
        attempt("/etc/passwd", lambda: read("/etc/passwd")),
        attempt("parent of the plugin directory", lambda: read("/plugins/../outside.txt")),
        attempt("outside via a symlink", lambda: read("/plugins/escape/outside.txt")),
        attempt("root listing", lambda: os.listdir("/")),
        attempt("proc", lambda: read("/proc/self/environ")),
    ):
        influxdb3_local.info(line)
    influxdb3_local.info("environment:", sorted(os.environ))
