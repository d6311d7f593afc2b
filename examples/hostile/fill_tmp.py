# Fills /tmp: writes until a write fails, deletes the file (which gives nothing back
# before the call ends), then creates directories until that fails too.
import errno
import os


def process_writes(influxdb3_local, table_batches, args=None):
    written = 0
    try:
        with open("/tmp/fill", "wb") as f:
            while True:
                f.write(b"x" * 65536)
                f.flush()
                written += 65536
    except OSError as e:
        influxdb3_local.info(f"wrote {written}: {errno.errorcode.get(e.errno, e.errno)}")
    os.unlink("/tmp/fill")
    made = 0
    try:
        while True:
            os.mkdir(f"/tmp/d{made}")
            made += 1
    except OSError as e:
        influxdb3_local.info(f"made {made}: {errno.errorcode.get(e.errno, e.errno)}")
