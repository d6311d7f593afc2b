"""Patches applied to modules as they are imported.

Some modules the runtime adapts to the sandbox are not in the snapshot: packages a
plugin installs (urllib3, httpx), imported at run time from a read-only directory, and
standard modules kept out of the snapshot so that an instance that never uses them
does not carry them (http.client, asyncio). `patch(name, function)` has `function`
called with the module `name` right after it is executed, whenever it is first
imported, or at once if it already is.
"""

import sys

# What to patch in which module.
_PATCHES = {}


def patch(name, function):
    """Calls `function(module)` on the module `name` once it is imported."""
    if not any(isinstance(finder, _PatchingFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchingFinder())
    _PATCHES[name] = function
    if name in sys.modules:
        function(sys.modules[name])


class _PatchingLoader:
    """Loads a module with `loader`, then patches it with `function`."""

    def __init__(self, loader, function):
        self._loader = loader
        self._function = function

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        # The module keeps its own loader, for whatever asks it for its source.
        module.__loader__ = module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        self._function(module)


class _PatchingFinder:
    """A meta path finder that finds a module to patch through the others, and wraps
    its loader."""

    def find_spec(self, name, path=None, target=None):
        function = _PATCHES.get(name)
        if function is None:
            return None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if finder is self or find_spec is None:
                continue
            spec = find_spec(name, path, target)
            if spec is not None:
                spec.loader = _PatchingLoader(spec.loader, function)
                return spec
        return None
