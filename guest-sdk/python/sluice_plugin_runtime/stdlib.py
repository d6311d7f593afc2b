"""Makes the whole pure-Python standard library importable inside the component.

componentize-py snapshots the interpreter after initialisation: only modules imported by
then are inside the component, and the standard library's files are readable only while
that happens. `capture` reads every module's source at that moment, compiles it, and keeps
the marshalled code in memory; `StdlibFinder` then serves any of them at run time.
"""

import marshal
import os
import sys
from importlib.machinery import ModuleSpec

# Never needed by a plugin, and large or unusable without a display or a shell.
_SKIPPED = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
            "venv", "__phello__", "site-packages", "turtle", "antigravity", "this"}


def _walk(root, prefix):
    for entry in sorted(os.listdir(root)):
        path = f"{root}/{entry}"
        if entry.endswith(".py"):
            stem = entry[:-3]
            if stem in _SKIPPED or "-" in stem:
                continue
            if stem == "__init__":
                continue
            yield f"{prefix}{stem}", False, path
        elif "." not in entry and entry not in _SKIPPED and os.path.isdir(path):
            init = f"{path}/__init__.py"
            if os.path.exists(init):
                yield f"{prefix}{entry}", True, init
                yield from _walk(path, f"{prefix}{entry}.")


def capture(root):
    """Returns {module name: (is_package, marshalled code)} for the library under `root`."""
    modules = {}
    for name, is_package, path in _walk(root, ""):
        with open(path, "rb") as f:
            source = f.read()
        try:
            code = compile(source, path, "exec", dont_inherit=True, optimize=0)
        except SyntaxError:
            continue
        modules[name] = (is_package, marshal.dumps(code))
    return modules


class StdlibFinder:
    """A meta path finder and loader over the captured modules."""

    def __init__(self, modules):
        self.modules = modules

    def find_spec(self, fullname, path=None, target=None):
        entry = self.modules.get(fullname)
        if entry is None:
            return None
        spec = ModuleSpec(fullname, self, is_package=entry[0])
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        is_package, code = self.modules[module.__spec__.name]
        if is_package:
            module.__path__ = []
        exec(marshal.loads(code), module.__dict__)


def install(modules):
    """Puts a finder for `modules` just before the path-based finder."""
    finder = StdlibFinder(modules)
    position = len(sys.meta_path)
    for i, existing in enumerate(sys.meta_path):
        if getattr(existing, "__name__", "") == "PathFinder":
            position = i
            break
    sys.meta_path.insert(position, finder)
