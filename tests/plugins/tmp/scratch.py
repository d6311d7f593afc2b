"""Writes `?write=` bytes to a new file in /tmp, then holds the call `?hold=` seconds.

Answers what /tmp held before writing, and how the write went: "ok" or the errno's name.
With `?keep=1` the file stays open after the call (in `builtins`, which outlive the
call's globals), and the answer says whether an earlier call's file was still there.
"""

import builtins
import errno
import json
import os
import tempfile
import time


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    answer = {"before": sorted(os.listdir("/tmp"))}
    keep = "keep" in query_parameters
    if keep:
        answer["kept"] = hasattr(builtins, "scratch_kept")
    size = int(query_parameters.get("write", "0"))
    try:
        f = tempfile.NamedTemporaryFile(prefix="scratch-", delete=False)
        f.write(b"s" * size)
        f.flush()
        if keep:
            builtins.scratch_kept = f
        else:
            f.close()
        answer["write"] = "ok"
    except OSError as e:
        answer["write"] = errno.errorcode.get(e.errno, str(e.errno))
    time.sleep(float(query_parameters.get("hold", "0")))
    return json.dumps(answer)
