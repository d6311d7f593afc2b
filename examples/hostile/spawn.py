import os
import subprocess
import threading


def attempt(what, action):
    try:
        action()
    except Exception as e:
        return f"{what}: refused ({type(e).__name__})"
    return f"{what}: STARTED"


def process_writes(influxdb3_local, table_batches, args=None):
    influxdb3_local.info(attempt("thread", lambda: threading.Thread(target=print).start()))
    influxdb3_local.info(attempt("subprocess", lambda: subprocess.run(["/bin/sh", "-c", "true"])))
    influxdb3_local.info(attempt("fork", lambda: os.fork()))
