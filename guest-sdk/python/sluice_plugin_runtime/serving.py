"""One call's host and its run, the same in both runtimes: the plugin API's host reached
through the door (`door.py`), whose batched writes reach the host only if the call
succeeds; loading a plugin; running a call on it.

The sandbox's `app.py` keeps one host for its instance, which runs one call at a time;
the pyo3 runtime's `native.py` makes one for each call, since it runs many at once.
"""

import struct

from . import api, door, line_shapes, plugin
from .columns import rows_from_columns
from .door import Err
from .line_builder import LineBuilder

# Batched writes reach the host in chunks of this many lines, joined into one string,
# and the rest when the call succeeds: a host call per line, or a list of strings,
# would cost more than building the lines.
_WRITE_CHUNK_LINES = 4096
# What stands in a line for a value handed over apart from it (the door's `Write`).
_FLOAT_PLACEHOLDER = "\0"
_TIMESTAMP_PLACEHOLDER = "\1"

# Shape functions by measurement name, looked up for every `LineBuilder` line written.
_SHAPES = line_shapes.SHAPES


class _Batch:
    """Lines queued for one database (None: the trigger's) and not handed over yet, in
    write order, with the float values and timestamps their placeholders stand for."""

    __slots__ = ("database", "lines", "floats", "stamps")

    def __init__(self, database):
        self.database = database
        self.drop()

    def write(self, line_builder):
        """Queues the line `line_builder` builds. Runs once per line a plugin writes,
        so `LineBuilder` lines are assembled right here, their floats (and, by a shape
        function, their timestamps) left to the host: by the function for their shape if
        there is one, else by `_assembled`."""
        line = None
        if type(line_builder) is LineBuilder:
            try:
                line = _SHAPES[line_builder.measurement](line_builder, self.floats, self.stamps)
            except Exception:
                # No function for the measurement, or a builder whose attributes the
                # plugin replaced with objects of its own: the general path decides.
                line = None
            if line is None:
                line = self._assembled(line_builder)
        if line is None:
            line = api.built_line(line_builder)
            if _FLOAT_PLACEHOLDER in line or _TIMESTAMP_PLACEHOLDER in line:
                # Handed over alone, with no values apart, it is taken as it is.
                self.hand_over()
                door.write(self.database, line, b"", b"")
                return
        lines = self.lines
        lines.append(line)
        if len(lines) >= _WRITE_CHUNK_LINES:
            self.hand_over()

    def _assembled(self, line_builder):
        """The line of a `LineBuilder` by the general path, whose shape is then learnt;
        None if it holds a placeholder character of its own, which would pass for one."""
        floats = self.floats
        placed = len(floats)
        try:
            line = line_builder._line(floats)
        except BaseException:
            del floats[placed:]
            raise
        if (
            line.count(_FLOAT_PLACEHOLDER) != len(floats) - placed
            or _TIMESTAMP_PLACEHOLDER in line
        ):
            del floats[placed:]
            return None
        try:
            line_shapes.learn(line_builder)
        except Exception:
            pass  # only a way to go faster: the line is written all the same
        return line

    def hand_over(self):
        if self.lines:
            text = "\n".join(self.lines)
            floats = self.floats
            stamps = self.stamps
            try:
                stamps = struct.pack(f"<{len(stamps)}q", *stamps)
            except struct.error:
                # A timestamp beyond 64 bits: all are written out, for the host to
                # refuse the line as it refuses any such line.
                pieces = text.split(_TIMESTAMP_PLACEHOLDER)
                text = "".join(map("{}{}".format, pieces, [*stamps, ""]))
                stamps = b""
            door.write(self.database, text, struct.pack(f"<{len(floats)}d", *floats), stamps)
            self.drop()

    def drop(self):
        self.lines = []
        self.floats = []
        self.stamps = []


class DoorHost:
    """The plugin API's host, reached through the door."""

    def __init__(self):
        self._own = _Batch(None)
        self._other = {}  # database -> _Batch
        # `influxdb3_local.write` itself: one Python call less per line written.
        self.write = self._own.write

    def log(self, level, text):
        door.log(level, text)

    def query(self, sql, params, database):
        try:
            row_count, columns = door.query(sql, params, database)
        except Err as e:
            raise api.HostError(e.value) from None
        return rows_from_columns(row_count, columns, True)

    def write_to_db(self, database, line_builder):
        batch = self._other.get(database)
        if batch is None:
            batch = self._other[database] = _Batch(database)
        batch.write(line_builder)

    def hand_over_writes(self):
        """Gives the host the batched writes not yet handed over."""
        self._own.hand_over()
        for batch in self._other.values():
            batch.hand_over()
        self._other = {}

    def drop_writes(self):
        """Forgets the batched writes of a failed call (the host drops its part)."""
        self._own.drop()
        self._other = {}

    def write_sync(self, database, line_protocol, no_sync):
        try:
            door.write_sync(database, line_protocol, no_sync)
        except Err as e:
            raise api.HostError(e.value) from None

    def cache_get(self, key, use_global):
        return door.cache_get(key, use_global)

    def cache_put(self, key, value, ttl_seconds, use_global):
        try:
            door.cache_put(key, value, ttl_seconds, use_global)
        except Err as e:
            raise ValueError(e.value) from None

    def cache_delete(self, key, use_global):
        return door.cache_delete(key, use_global)


def load(source, plugin_root):
    """The plugin of `source` (as `door.take_call` gives it) and, for a file compiled now,
    its code marshalled (else None). A package plugin is imported from its directory
    under `plugin_root`."""
    if source[0] == "file":
        loaded = plugin.FilePlugin(source[1], source[2], source[3])
        compiled, loaded.marshalled = loaded.marshalled, None
    else:
        loaded = plugin.PackagePlugin(plugin_root, source[1])
        compiled = None
    return loaded, compiled


def _run(host, entry_point, *args):
    """Runs an entry point; its batched writes reach the host only if it succeeds."""
    try:
        result = entry_point(*args)
    except BaseException:
        host.drop_writes()
        raise
    host.hand_over_writes()
    return result


def run(runner, host, call):
    """Runs `call` (as `door.take_call` gives it) with `runner`, whose API is `host`'s: a
    request's response, else None."""
    kind = call[0]
    if kind == door.WRITES:
        _run(host, runner.process_writes, call[2], call[1])
    elif kind == door.SCHEDULE:
        _run(host, runner.process_scheduled_call, call[2], call[1])
    else:
        _, args, _method, _path, query, headers, body = call
        status, headers, body = _run(host, runner.process_request, query, headers, body, args)
        return status, list(headers.items()), body.encode("utf-8")
    return None
