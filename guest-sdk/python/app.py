"""The Python runtime's guest layer: binds the plugin API to the host through the door.

The sandbox imports this module once, while it pre-initialises the runtime; everything
imported or computed here is part of the snapshot every instance starts from. Each call
is then one `serve()`: it takes the call through the door (`sluice_plugin_runtime.door`),
runs it, and hands its outcome back.
"""

import gc
import locale
import random
import sys

from sluice_plugin_runtime import api, door, egress, plugin, posix, serving
from sluice_plugin_runtime.serving import DoorHost

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
    loaded, compiled = serving.load(source, PLUGIN_ROOT)
    _runner = plugin.Runner(_API, loaded)
    return compiled


def _loaded_runner():
    if _runner is None:
        raise plugin.PluginFailure("no plugin is loaded")
    return _runner


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
        response = serving.run(_loaded_runner(), _HOST, call)
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
