# The interpreter's speed on a few kinds of Python, timed inside the sandbox: nanoseconds
# an iteration, the best of three runs of N iterations (`?n=N`, default 100,000; `&kind=K`
# for one kind alone). Used in
# BENCHMARKS.md ("Against the runtime before, in one run") to compare the runtimes'
# CPython builds on the same server:
#
#   sluice serve --plugin-dir benches/plugins --without-auth &
#   sluice create database bench
#   sluice create trigger -d bench interpreter --trigger-spec request:interpreter \
#       --path interpreter.py
#   curl 'http://127.0.0.1:8181/api/v3/engine/interpreter'
#
# or without a server: `sluice test request_plugin --local benches/plugins/interpreter.py`.
import time


def _small(n):
    """Integers that stay small: no allocation."""
    t = 0
    for i in range(n):
        t ^= i & 1023
    return t


def _big(n):
    """A sum of squares past 30 bits (two of CPython's digits): allocations each time."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def _calls(n):
    def f(x):
        return x
    for i in range(n):
        f(i)


def _lists(n):
    for i in range(n):
        [i, i]


def _floats(n):
    x = 0.5
    for i in range(n):
        x = x * 1.0000001 + 0.1
    return x


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    n = int(query_parameters.get("n", "100000"))
    out = {}
    kinds = [("small_int", _small), ("big_int", _big), ("calls", _calls), ("lists", _lists), ("floats", _floats)]
    only = query_parameters.get("kind")
    for name, f in kinds:
        if only is not None and name != only:
            continue
        best = None
        for _ in range(3):
            t0 = time.perf_counter_ns()
            f(n)
            took = (time.perf_counter_ns() - t0) / n
            best = took if best is None else min(best, took)
        out[name] = round(best, 1)
    return out


# The same figures from a native CPython, to compare with the sandbox's:
#   python3 benches/plugins/interpreter.py [N [KIND]]
if __name__ == "__main__":
    import sys

    parameters = dict(zip(["n", "kind"], sys.argv[1:]))
    print(process_request(None, parameters, {}, b""))
