"""Loads a plugin and calls its entry points with upstream's arguments and errors.

A single-file plugin is compiled once and run in fresh globals on every call, so no state
survives between calls except through the cache; the globals are cleared when the call
ends, so what the call made goes then, not while the next call runs. A package (a
directory holding `__init__.py`, mounted alone at `/plugins/<name>`) is imported once and
keeps its module state, as upstream.
"""

import builtins
import datetime
import importlib.util
import marshal
import sys
import traceback
import types

from . import line_builder
from .columns import rows_from_columns
from .responses import to_response

MISSING_ENTRY_POINT = {
    "process_writes": "the process_writes function is not present in the plugin. "
    "Should be defined as: process_writes(influxdb3_local, table_batches, args=None)",
    "process_request": "the process_request function is not present in the plugin. "
    "Should be defined as: process_request(influxdb3_local, query_parameters, "
    "request_headers, request_body, args=None) -> Tuple[str, Optional[Dict[str, str]]]",
    "process_scheduled_call": "the process_scheduled_call function is not present in the "
    "plugin. Should be defined as: process_scheduled_call(influxdb3_local, call_time, "
    "args=None)",
}


class PluginFailure(Exception):
    """A plugin failed; the message is what the trigger's error entry says."""


def install_builtins():
    """Makes `LineBuilder` usable without an import, as upstream does."""
    builtins.LineBuilder = line_builder.LineBuilder
    for name in ("InfluxDBError", "InvalidMeasurementError", "InvalidKeyError", "InvalidLineError"):
        setattr(builtins, name, getattr(line_builder, name))


def describe(error, plugin_files):
    """`Type: message`, plus the innermost plugin file and line where the plugin raised."""
    name = type(error).__name__
    text = str(error)
    message = f"{name}: {text}" if text else name
    if isinstance(error, SyntaxError):
        return message
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename in plugin_files]
    if frames:
        message += f" ({frames[-1].filename}, line {frames[-1].lineno})"
    return message


class FilePlugin:
    """A single `.py` file, re-run in fresh globals for every call.

    `compiled` is its code as an earlier load marshalled it, if the host kept that: loaded
    instead of compiling the source again. `marshalled` is the code compiled now, for the
    host to keep (None when `compiled` served)."""

    def __init__(self, name, source, compiled=None):
        self.name = name
        self.module_name = name.rsplit("/", 1)[-1].removesuffix(".py")
        self.files = {name}
        self.marshalled = None
        if compiled is not None:
            try:
                code = marshal.loads(compiled)
            except (EOFError, ValueError, TypeError):
                code = None
            if type(code) is types.CodeType and code.co_filename == name:
                self.code = code
                return
        try:
            self.code = compile(source, name, "exec")
        except SyntaxError as e:
            raise PluginFailure(describe(e, self.files)) from None
        self.marshalled = marshal.dumps(self.code)

    def globals(self):
        """Fresh globals, with the plugin's code run in them."""
        namespace = {"__name__": self.module_name, "__file__": self.name}
        exec(self.code, namespace)
        return namespace

    @staticmethod
    def release(namespace):
        # The plugin's functions and their globals refer to each other: cleared, what the
        # call made goes now instead of at a later collection.
        namespace.clear()


class PackagePlugin:
    """A directory with `__init__.py`, mounted at `plugin_root/name`, imported once as
    the module named after its last part."""

    def __init__(self, plugin_root, name):
        self.name = name
        location = f"{plugin_root}/{name}"
        self.files = _PackageFiles(f"{location}/")
        module_name = name.rsplit("/", 1)[-1]
        # A package loaded again (its files changed) is imported afresh, its submodules
        # too: in a runtime that lives on between loads, they would be the old ones.
        for loaded in [m for m in sys.modules if m == module_name or m.startswith(f"{module_name}.")]:
            del sys.modules[loaded]
        try:
            # From its own directory: the rest of the plugin directory is not mounted.
            spec = importlib.util.spec_from_file_location(
                module_name, f"{location}/__init__.py", submodule_search_locations=[location]
            )
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        except Exception as e:
            sys.modules.pop(module_name, None)
            raise PluginFailure(
                f"Failed to import plugin module '{name}': {describe(e, self.files)}\n"
                "Hint: Check for syntax errors or missing dependencies in Python files."
            ) from None
        self.module = module

    def globals(self):
        return self.module.__dict__

    @staticmethod
    def release(namespace):
        pass


class _PackageFiles:
    """`in` is true for any file below the package directory."""

    def __init__(self, prefix):
        self.prefix = prefix

    def __contains__(self, filename):
        return filename.startswith(self.prefix)


def arguments(args):
    """Trigger arguments: `None` when absent, else a `dict[str, str]` (last key wins)."""
    return None if args is None else dict(args)


def call_time(nanoseconds):
    """The planned instant as a naive `datetime` in UTC, whole seconds."""
    return datetime.datetime.fromtimestamp(
        nanoseconds // 1_000_000_000, tz=datetime.timezone.utc
    ).replace(tzinfo=None)


class Runner:
    """Runs the entry points of one loaded plugin against one host."""

    def __init__(self, api, plugin):
        self.api = api
        self.plugin = plugin

    def _call(self, function_name, *args, convert=None):
        """Calls the plugin's `function_name`; `convert` turns its result into what the
        entry point returns, while the plugin's globals are still there."""
        files = self.plugin.files
        try:
            namespace = self.plugin.globals()
        except BaseException as e:
            raise PluginFailure(describe(e, files)) from None
        try:
            function = namespace.get(function_name)
            if function is None:
                raise PluginFailure(MISSING_ENTRY_POINT[function_name])
            try:
                result = function(self.api, *args)
            except BaseException as e:
                raise PluginFailure(describe(e, files)) from None
            if convert is None:
                return result
            try:
                return convert(result)
            except Exception as e:
                raise PluginFailure(describe(e, files)) from None
        finally:
            self.plugin.release(namespace)

    def process_writes(self, batches, args):
        """`batches` holds (table name, row count, columns) as `columns.py` describes."""
        table_batches = [
            {"table_name": name, "rows": rows_from_columns(row_count, columns, False)}
            for name, row_count, columns in batches
        ]
        self._call("process_writes", table_batches, arguments(args))

    def process_scheduled_call(self, call_time_ns, args):
        self._call("process_scheduled_call", call_time(call_time_ns), arguments(args))

    def process_request(self, query, headers, body, args):
        """Returns (status, headers dict, body str)."""
        query_parameters = dict(query)
        request_headers = {
            name: v for k, v in headers if (name := k.lower()) != "authorization"
        }
        return self._call(
            "process_request",
            query_parameters,
            request_headers,
            body,
            arguments(args),
            convert=to_response,
        )
