"""Attacks on the host, one per request: `?attack=NAME` (and `?path=` where one is needed).
Each answers with what happened, so the test can tell a refusal from a success."""

import json
import os


def attempt(action):
    try:
        return {"outcome": "done", "value": action()}
    except Exception as e:
        return {"outcome": "refused", "error": f"{type(e).__name__}: {e}"}


def copy_to(api, params):
    # A file written by SQL: another tenant's plugin, a snapshot manifest, anywhere.
    return attempt(lambda: api.query(
        f"COPY (SELECT 'import os' AS line) TO '{params['path']}' STORED AS CSV"
    ))


def external_table(api, params):
    return attempt(lambda: api.query(
        f"CREATE EXTERNAL TABLE stolen STORED AS CSV LOCATION '{params['path']}'"
    ))


def huge_result(api, params):
    # About a gigabyte of result, built on the host before the plugin sees it.
    return attempt(lambda: len(api.query(
        "SELECT repeat('x', 1000) AS s FROM generate_series(1, 1000000)"
    )))


def long_line(api, params):
    api.info("L" * (10 << 20))
    return {"outcome": "done"}


def log_flood(api, params):
    line = "F" * (60 << 10)
    for _ in range(1000):
        api.info(line)
    return {"outcome": "done"}


def big_value(api, params):
    return attempt(lambda: api.cache.put("big", "x" * (20 << 20)))


def fill_cache(api, params):
    stored = 0
    while stored < 1000:
        result = attempt(lambda: api.cache.put(f"k{stored}", "x" * (1 << 20),
                                               use_global=params.get("global") == "1"))
        if result["outcome"] == "refused":
            result["stored"] = stored
            return result
        stored += 1
    return {"outcome": "done", "stored": stored}


def peek(api, params):
    def read(path):
        with open(path, "rb") as f:
            return len(f.read())
    return {
        "other plugin": attempt(lambda: read("/plugins/beta_request.py")),
        "plugin directory": attempt(lambda: os.listdir("/plugins")),
        "repository copies": attempt(lambda: os.listdir("/plugins/.repository")),
        "host file": attempt(lambda: read("/etc/passwd")),
        "packages": attempt(lambda: sorted(os.listdir("/plugins/.packages"))),
    }


def poison_cache(api, params):
    # Past the Python API, which refuses to share it: a pickle whose loading writes to
    # `beta` through whichever trigger of `alpha` reads it, if that one may.
    import pickle
    from sluice_plugin_runtime import door

    class Evil:
        def __reduce__(self):
            code = (
                "from sluice_plugin_runtime import door\n"
                "door.write('beta', 'pwned by=1i', b'', b'')\n"
            )
            return (exec, (code,))

    door.cache_put("evil", pickle.dumps(Evil()), None, True)
    return {"outcome": "done"}


def log_many(api, params):
    for i in range(int(params["lines"])):
        api.info(f"alpha line {i}")
    return {"outcome": "done"}


def grow(api, params):
    # Most of the memory limit, held in the plugin's globals as module-level data is.
    global BLOCK
    BLOCK = bytearray(int(params["mib"]) << 20)
    return {"outcome": "done", "bytes": len(BLOCK)}


def cross_query(api, params):
    # Another tenant's rows, by naming its database.
    return attempt(lambda: api.query("SELECT * FROM events", database="beta"))


def cross_write(api, params):
    # Rows into another tenant's database, at once.
    return attempt(lambda: api.write_sync_to_db(
        "beta", LineBuilder("pwned").int64_field("n", 1), False
    ))


ATTACKS = {f.__name__: f for f in (
    copy_to, external_table, huge_result, long_line, log_flood, big_value, fill_cache,
    peek, poison_cache, log_many, grow, cross_query, cross_write,
)}


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    attack = ATTACKS[query_parameters["attack"]]
    return json.dumps(attack(influxdb3_local, query_parameters))
