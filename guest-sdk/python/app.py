"""The Python runtime's guest layer: binds the plugin API to the host through the door.

The sandbox imports this module once, while it pre-initialises the runtime; everything
imported or computed here is part of the snapshot every instance starts from. Each call
is then one `serve()`: it takes the call through the door (`sluice_plugin_runtime.door`),
runs it, and hands its outcome back.
"""

import gc
import locale
import random
import struct
import sys

from sluice_plugin_runtime import api, door, egress, line_shapes, plugin, posix
from sluice_plugin_runtime.columns import rows_from_columns
from sluice_plugin_runtime.door import Err
from sluice_plugin_runtime.line_builder import LineBuilder

# Where the host mounts the plugin directory, read-only.
PLUGIN_ROOT = "/plugins"
# Where `sluice install package` puts packages, in the plugin directory.
PACKAGES_ROOT = f"{PLUGIN_ROOT}/.packages"
# Where the host mounts the packages installed for the plugin's database: first on the
# path, so that a database may have its own version of a shared package.
DATABASE_PACKAGES_ROOT = f"{PLUGIN_ROOT}/.database-packages"

# What packages ask of POSIX and WASI lacks: who runs them (`os.getuid`, `pwd`).
posix.install()
# The locale a Linux host gives a plugin: UTF-8 text, C conventions otherwise.
locale.setlocale(locale.LC_ALL, "C.UTF-8")
# Outbound HTTP and HTTPS through the host, for http.client, urllib.request, urllib3 and
# requests; before anything imports urllib.request.
egress.install()

# Imported now so that plugins using them pay nothing at run time; the rest of the
# standard library, and the packages built into the runtime, are imported on first use
# from its library.
import base64, bisect, collections, copy, csv, dataclasses, decimal, email, email.message  # noqa: E401,F401,E402
import fractions, functools, hashlib, heapq, itertools, json, logging, pickle, re  # noqa: E401,F401,E402
import statistics, string, textwrap, tomllib, typing, urllib.parse, uuid, zlib, zoneinfo  # noqa: E401,F401,E402

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


_HOST = DoorHost()
_API = api.make_api(_HOST)
plugin.install_builtins()
_runner = None


# Whether this instance has drawn its own seed: the snapshot's is every instance's.
_reseeded = False


def _load(source):
    """Loads the plugin of `source` (as `door.take_call` gives it); for a file compiled
    now, its code marshalled, else None."""
    global _runner
    # Known only now (the directory is mounted at run time); what the import system
    # remembers of it is forgotten, since packages may have been installed since.
    for root in (DATABASE_PACKAGES_ROOT, PACKAGES_ROOT):
        if root not in sys.path:
            sys.path.append(root)
        sys.path_importer_cache.pop(root, None)
    if source[0] == "file":
        loaded = plugin.FilePlugin(source[1], source[2], source[3])
        compiled, loaded.marshalled = loaded.marshalled, None
    else:
        loaded = plugin.PackagePlugin(PLUGIN_ROOT, source[1])
        compiled = None
    _runner = plugin.Runner(_API, loaded)
    return compiled


def _loaded_runner():
    if _runner is None:
        raise plugin.PluginFailure("no plugin is loaded")
    return _runner


def _run(entry_point, *args):
    """Runs an entry point; its batched writes reach the host only if it succeeds."""
    try:
        result = entry_point(*args)
    except BaseException:
        _HOST.drop_writes()
        raise
    _HOST.hand_over_writes()
    return result


def _call(call):
    """Runs `call` (as `door.take_call` gives it): a request's response, else None."""
    kind = call[0]
    if kind == door.WRITES:
        _run(_loaded_runner().process_writes, call[2], call[1])
    elif kind == door.SCHEDULE:
        _run(_loaded_runner().process_scheduled_call, call[2], call[1])
    else:
        _, args, _method, _path, query, headers, body = call
        status, headers, body = _run(_loaded_runner().process_request, query, headers, body, args)
        return status, list(headers.items()), body.encode("utf-8")
    return None


def serve():
    """Runs the call the host has for this turn, and hands its outcome back. An exception
    other than the plugin's failure ends the turn: the host stops the instance."""
    global _reseeded
    if not _reseeded:
        random.seed()
        _reseeded = True
    try:
        call = door.take_call()
        if call[0] == door.LOAD:
            door.finish_load(_load(call[1]))
            return
        response = _call(call)
    except plugin.PluginFailure as failure:
        door.fail(str(failure))
        return
    door.finish(response)


# The line the host runs each turn (`SERVE` in `runtime/sandbox/src/instance.rs`).
SERVE_SOURCE = "_sluice_serve()"


def _serve_turns_directly():
    """Makes the runtime's turns call `serve` without compiling their line.

    The runtime's `turn` export runs `_reactor.turn`, which sets the instance up, runs the
    line through `_reactor._run_turn` (parsed, compiled and kept in `linecache`, as a
    notebook cell is: about 0.1 ms a call, and a `linecache` entry per turn), flushes the
    output and reports an exception. Only the middle step is replaced, for the host's
    line; any other line runs as before. A runtime without that step keeps its own.
    """
    try:
        import _reactor
        run_source = _reactor._run_turn
    except (ImportError, AttributeError):
        return

    def run_turn(source, name):
        if source == SERVE_SOURCE:
            return serve()
        return run_source(source, name)

    _reactor._run_turn = run_turn


_serve_turns_directly()


# Everything made so far belongs to the snapshot every instance starts from and lives as
# long as the instance: the cyclic garbage collector need not look at it again. Each of
# its collections would otherwise walk all of it, writing to every object it visits and
# so to the snapshot's pages, which copy-on-write then copies into each instance.
gc.freeze()
