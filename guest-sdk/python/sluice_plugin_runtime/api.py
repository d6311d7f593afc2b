"""The `influxdb3_local` object handed to every plugin entry point.

It has exactly the nine public attributes of the upstream API: `info`, `warn`, `error`,
`query`, `write`, `write_to_db`, `write_sync`, `write_sync_to_db` and `cache`. Every call
goes to a *host*: an object with the methods of `Host` below, in both runtimes the
`DoorHost` of `serving.py`, which reaches the server through the door.
"""

import io
import math
import pickle


class QueryError(Exception):
    """Raised by `influxdb3_local.query` when the query fails."""


QueryError.__module__ = "influxdb3_py_api"


class HostError(Exception):
    """A host call failed; the message is the host's."""


class Host:
    """What the API needs from its host (documentation only; any duck type works)."""

    def log(self, level, text): ...
    def query(self, sql, params, database): ...  # -> list of row dicts, or HostError
    def write(self, line_builder): ...  # queues `built_line(line_builder)`
    def write_to_db(self, database, line_builder): ...  # the same, for `database`
    def write_sync(self, database, line_protocol, no_sync): ...  # HostError on failure
    def cache_get(self, key, use_global): ...  # -> bytes or None
    def cache_put(self, key, value, ttl_seconds, use_global): ...
    def cache_delete(self, key, use_global): ...  # -> bool


def _join_args(args):
    return " ".join(str(a) for a in args)


def _checked_line(line):
    """`line`, which must be a `str`, as upstream's conversion to `PyString`."""
    if not isinstance(line, str):
        raise TypeError(
            f"'{type(line).__name__}' object cannot be converted to 'PyString'"
        )
    return line


def built_line(line_builder):
    """What `line_builder.build()` returns, which must be a `str`."""
    return _checked_line(line_builder.build())


def _check_ttl(ttl):
    if ttl is None:
        return None
    ttl = float(ttl)
    if ttl < 0:
        raise ValueError("cannot convert float seconds to Duration: value is negative")
    if math.isnan(ttl) or ttl > 1.8e19:
        raise ValueError(
            "cannot convert float seconds to Duration: value is either too big or NaN"
        )
    return ttl


# What values in a shared cache may hold: data, never code. Another trigger of the
# database may have written the value, and unpickling runs whatever callables a pickle
# names; these build data and nothing else. (`getattr`, which pickles of `ZoneInfo` time
# zones name, would reach any attribute of any object, and so is not among them.) Nor
# `range`: a few bytes of it would have `list` or `frozenset` build without end, with
# the interpreter's lock held, in a reader with no CPU limit (a pyo3 trigger).
_SHAREABLE = frozenset(
    [("builtins", name) for name in (
        "bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int",
        "list", "set", "slice", "str", "tuple",
    )]
    + [("datetime", name) for name in ("date", "datetime", "time", "timedelta", "timezone")]
    + [("collections", name) for name in ("Counter", "OrderedDict", "defaultdict", "deque")]
    + [("decimal", "Decimal"), ("fractions", "Fraction")]
)


class _SharedUnpickler(pickle.Unpickler):
    """Reads a shared cache value: builtin containers, numbers, text and bytes, dates
    and times, `Decimal`, `Fraction` and the `collections` types; anything else is
    refused before it is built."""

    def find_class(self, module, name):
        if (module, name) not in _SHAREABLE:
            raise pickle.UnpicklingError(
                f"a value in the shared cache may hold only data (builtin containers, "
                f"numbers, text, bytes, dates and times, Decimal, Fraction and collections "
                f"types), not {module}.{name}"
            )
        found = super().find_class(module, name)
        if found is bytes or found is bytearray:
            return _unsized(found)
        return found


def _unsized(kind):
    """`kind` (`bytes` or `bytearray`), refusing to make one of a size, which a few bytes
    of pickle could ask to be any size."""

    def build(*args):
        if args and isinstance(args[0], int):
            raise pickle.UnpicklingError(
                f"a value in the shared cache may not ask for a {kind.__name__} of a size"
            )
        return kind(*args)

    return build


def _shared_value(data):
    return _SharedUnpickler(io.BytesIO(data)).load()


def _query_params(args):
    if args is None:
        return []
    if not isinstance(args, dict):
        raise TypeError(
            f"argument 'args': '{type(args).__name__}' object cannot be converted to 'PyDict'"
        )
    params = []
    for key, value in args.items():
        if not isinstance(key, str) or not isinstance(value, str):
            bad = key if not isinstance(key, str) else value
            raise TypeError(
                f"argument 'args': '{type(bad).__name__}' object cannot be converted to 'PyString'"
            )
        params.append((key, value))
    return params


def make_api(host):
    """Builds the `influxdb3_local` object for one call on `host`."""

    class Cache:
        __slots__ = ()

        def put(self, key, value, ttl=None, use_global=None):
            data = pickle.dumps(value)
            if use_global:
                # Refused now rather than when another trigger reads it.
                _shared_value(data)
            host.cache_put(str(key), data, _check_ttl(ttl), bool(use_global))

        def get(self, key, default=None, use_global=None):
            raw = host.cache_get(str(key), bool(use_global))
            if raw is None:
                return default
            # The trigger's own cache holds only what the trigger put there; the shared
            # one, what any trigger of the database put.
            return _shared_value(raw) if use_global else pickle.loads(raw)

        def delete(self, key, use_global=None):
            return host.cache_delete(str(key), bool(use_global))

    class PluginApi:
        __slots__ = ()
        cache = Cache()

        def info(self, *args):
            host.log("info", _join_args(args))

        def warn(self, *args):
            host.log("warn", _join_args(args))

        def error(self, *args):
            host.log("error", _join_args(args))

        def query(self, query, args=None, database=None):
            params = _query_params(args)
            try:
                return host.query(query, params, database)
            except HostError as e:
                raise QueryError(str(e)) from None

        # The host's own function: `write` runs once per line a plugin writes, and a
        # Python call costs the sandboxed interpreter about a microsecond.
        write = host.write

        def write_to_db(self, db_name, line_builder):
            host.write_to_db(str(db_name), line_builder)

        def write_sync(self, line_builder, no_sync):
            self.write_sync_to_db(None, line_builder, no_sync)

        def write_sync_to_db(self, db_name, line_builder, no_sync):
            try:
                host.write_sync(db_name, built_line(line_builder), bool(no_sync))
            except HostError as e:
                raise Exception(str(e)) from None

    PluginApi.__name__ = PluginApi.__qualname__ = "PyPluginCallApi"
    return PluginApi()
