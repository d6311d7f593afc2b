"""The pyo3 runtime's entry points: the plugin API on the machine's CPython, in the
server's process, as the upstream engine runs it. No sandbox: see `docs/runtimes.md`.

The host runs calls of many triggers at once, each on a thread of its own; they take
turns on the interpreter's lock, and give it up in host calls. So nothing of a call is
kept here: `load` makes a trigger's plugin, which the host keeps, and `serve` runs one
call on it with a host of the call's own. Both speak to the host through the door
(`door.py`), as the sandbox's `app.py` does, and the host answers the door's messages
of the thread that sent them.
"""

import sys

from . import api, door, plugin, serving

plugin.install_builtins()


def load(plugin_root, package_roots):
    """Loads the plugin the host has for this turn: what `serve` runs it with, or None
    if it failed (the host has been told why). A package plugin is imported from its
    directory under `plugin_root`; the directories of `package_roots` go on the path,
    after the standard library and before the machine's own packages, for its imports."""
    for root in package_roots:
        if root not in sys.path:
            first_site = next((i for i, p in enumerate(sys.path) if "-packages" in p), len(sys.path))
            sys.path.insert(first_site, root)
        sys.path_importer_cache.pop(root, None)
    try:
        call = door.take_call()
        loaded, compiled = serving.load(call[1], plugin_root)
    except plugin.PluginFailure as failure:
        door.fail(str(failure))
        return None
    door.finish_load(compiled)
    return loaded


def serve(loaded):
    """Runs the call the host has for this turn on the plugin `loaded`, and hands its
    outcome back."""
    host = serving.DoorHost()
    runner = plugin.Runner(api.make_api(host), loaded)
    try:
        response = serving.run(runner, host, door.take_call())
    except plugin.PluginFailure as failure:
        door.fail(str(failure))
        return
    door.finish(response)
