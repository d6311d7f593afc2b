"""The Python runtime component: binds the plugin API to the WIT contract.

componentize-py runs this module's top level once, while it pre-initialises the
component; everything imported or computed here is part of the snapshot every instance
starts from. The classes `EntryPoints` and `Loader` implement the exports of the
`python-runtime` world in `guest-sdk/wit/plugin.wit`.
"""

import gc
import os
import struct
import sys

from componentize_py_types import Err
from wit_world.imports import host as wit_host
from wit_world.imports import types as wit_types
from wit_world.exports import loader as wit_loader

from sluice_plugin_runtime import api, egress, line_shapes, plugin, posix, stdlib, zones
from sluice_plugin_runtime.columns import rows_from_columns
from sluice_plugin_runtime.line_builder import LineBuilder

# Where the host mounts the plugin directory, read-only.
PLUGIN_ROOT = "/plugins"
# Where `sluice install package` puts packages, in the plugin directory.
PACKAGES_ROOT = f"{PLUGIN_ROOT}/.packages"
# Where the host mounts the packages installed for the plugin's database: first on the
# path, so that a database may have its own version of a shared package.
DATABASE_PACKAGES_ROOT = f"{PLUGIN_ROOT}/.database-packages"

# The standard library is readable at /python only now, during pre-initialisation.
if os.path.isdir("/python"):
    stdlib.install(stdlib.capture("/python"))
# What packages ask of POSIX and WASI lacks: who runs them (`os.getuid`, `pwd`).
posix.install()
# Outbound HTTP and HTTPS through the host, for http.client, urllib.request, urllib3 and
# requests; before anything imports urllib.request.
egress.install()
# Time-zone data for zoneinfo, which WASI has none of.
zones.install()

# Imported now so that plugins using them pay nothing at run time; the rest of the
# standard library is imported on first use from the captured code.
import base64, bisect, collections, copy, csv, dataclasses, decimal, email, email.message  # noqa: E401,F401,E402
import fractions, functools, hashlib, heapq, itertools, json, logging, pickle, random, re  # noqa: E401,F401,E402
import statistics, string, struct, textwrap, tomllib, typing, urllib.parse, uuid, zlib, zoneinfo  # noqa: E401,F401,E402

_KINDS = {
    wit_types.ColumnValues_Tag: "tag",
    wit_types.ColumnValues_String: "string",
    wit_types.ColumnValues_Int: "int",
    wit_types.ColumnValues_Uint: "uint",
    wit_types.ColumnValues_Float: "float",
    wit_types.ColumnValues_Boolean: "boolean",
    wit_types.ColumnValues_Time: "time",
}


def _columns(wit_columns):
    """WIT columns as the (name, kind, payload, present) tuples `columns.py` reads."""
    converted = []
    for column in wit_columns:
        kind = _KINDS[type(column.values)]
        payload = column.values.value
        if kind == "tag" or kind == "string":
            payload = (payload.values, payload.indices)
        converted.append((column.name, kind, payload, column.present))
    return converted


_LEVELS = {
    "info": wit_host.LogLevel.INFO,
    "warn": wit_host.LogLevel.WARN,
    "error": wit_host.LogLevel.ERROR,
}


# Batched writes reach the host in chunks of this many lines, joined into one string,
# and the rest when the call succeeds: a host call per line, or a list of strings,
# would cost more than building the lines.
_WRITE_CHUNK_LINES = 4096
# What stands in a line for a value handed over apart from it (WIT `write`).
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
                wit_host.write(self.database, line, b"", b"")
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
            wit_host.write(self.database, text, struct.pack(f"<{len(floats)}d", *floats), stamps)
            self.drop()

    def drop(self):
        self.lines = []
        self.floats = []
        self.stamps = []


class WitHost:
    """The plugin API's host, reached through the WIT imports."""

    def __init__(self):
        self._own = _Batch(None)
        self._other = {}  # database -> _Batch
        # `influxdb3_local.write` itself: one Python call less per line written.
        self.write = self._own.write

    def log(self, level, text):
        wit_host.log(_LEVELS[level], text)

    def query(self, sql, params, database):
        try:
            result = wit_host.query(sql, params, database)
        except Err as e:
            raise api.HostError(e.value) from None
        return rows_from_columns(result.row_count, _columns(result.columns), True)

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
            wit_host.write_sync(database, line_protocol, no_sync)
        except Err as e:
            raise api.HostError(e.value) from None

    def cache_get(self, key, use_global):
        return wit_host.cache_get(key, use_global)

    def cache_put(self, key, value, ttl_seconds, use_global):
        try:
            wit_host.cache_put(key, value, ttl_seconds, use_global)
        except Err as e:
            raise ValueError(e.value) from None

    def cache_delete(self, key, use_global):
        return wit_host.cache_delete(key, use_global)


_HOST = WitHost()
_API = api.make_api(_HOST)
plugin.install_builtins()
_runner = None


def _failed(failure):
    return Err(wit_types.PluginError(message=str(failure)))


def _loaded_runner():
    if _runner is None:
        raise Err(wit_types.PluginError(message="no plugin is loaded"))
    return _runner


class Loader:
    def load(self, source):
        global _runner
        # Known only now (the directory is mounted at run time); what the import system
        # remembers of it is forgotten, since packages may have been installed since.
        for root in (DATABASE_PACKAGES_ROOT, PACKAGES_ROOT):
            if root not in sys.path:
                sys.path.append(root)
            sys.path_importer_cache.pop(root, None)
        try:
            if isinstance(source, wit_loader.PluginSource_File):
                name, code = source.value
                loaded = plugin.FilePlugin(name, code)
            else:
                loaded = plugin.PackagePlugin(PLUGIN_ROOT, source.value)
        except plugin.PluginFailure as failure:
            raise _failed(failure) from None
        _runner = plugin.Runner(_API, loaded)


def _run(entry_point, *args):
    """Runs an entry point; its batched writes reach the host only if it succeeds."""
    try:
        result = entry_point(*args)
    except plugin.PluginFailure as failure:
        _HOST.drop_writes()
        raise _failed(failure) from None
    except BaseException:
        _HOST.drop_writes()
        raise
    _HOST.hand_over_writes()
    return result


class EntryPoints:
    def process_writes(self, batches, args):
        tables = [(b.table_name, b.row_count, _columns(b.columns)) for b in batches]
        _run(_loaded_runner().process_writes, tables, args)

    def process_scheduled_call(self, call_time, args):
        _run(_loaded_runner().process_scheduled_call, call_time, args)

    def process_request(self, request, args):
        status, headers, body = _run(
            _loaded_runner().process_request, request.query, request.headers, request.body, args
        )
        return wit_types.HttpResponse(
            status=status, headers=list(headers.items()), body=body.encode("utf-8")
        )


# Everything made so far belongs to the snapshot every instance starts from and lives as
# long as the instance: the cyclic garbage collector need not look at it again. Each of
# its collections would otherwise walk all of it, writing to every object it visits and
# so to the snapshot's pages, which copy-on-write then copies into each instance.
gc.freeze()
