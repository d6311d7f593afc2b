"""The POSIX calls pure-Python packages make that WASI's CPython lacks.

Packages ask who runs them at import time or on common paths (`os.getuid` in `pint`,
`getpass.getuser` in logging and cache helpers, `pwd` through `os.path.expanduser`), and
fail where the call is missing. Inside the sandbox the answer is the same for every
plugin and tells nothing of the host: one unprivileged user, `plugin` (uid and gid
1000), in its own group, with no home and no shell. The process id is WASI's own (42),
and the parent is 1.

asyncio's event loops wake themselves from other threads and signal handlers through a
socket pair, which WASI cannot make: a plugin has neither threads nor signals, so its
loops go without one (`asyncio.run` works, `asyncio.sleep` and tasks included).
"""

import os
import sys
import types
from collections import namedtuple

from . import on_import

UID = 1000
GID = 1000
USER = "plugin"
HOME = "/"
SHELL = "/sbin/nologin"

struct_passwd = namedtuple(
    "struct_passwd", "pw_name pw_passwd pw_uid pw_gid pw_gecos pw_dir pw_shell"
)
struct_group = namedtuple("struct_group", "gr_name gr_passwd gr_gid gr_mem")

_PASSWD = struct_passwd(USER, "x", UID, GID, "Sluice plugin", HOME, SHELL)
_GROUP = struct_group(USER, "x", GID, [])


def _lookup(call, key_name, key, entry):
    """A function of the database `call` finding `entry` by its `key` only."""
    def lookup(wanted):
        if wanted == key:
            return entry
        raise KeyError(f"{call}(): {key_name} not found: {wanted!r}")
    lookup.__name__ = call
    return lookup


def _module(name, doc, **members):
    module = types.ModuleType(name, doc)
    module.__dict__.update(members)
    return module


def _without_self_pipe(selector_events):
    """Makes asyncio's selector event loops (`asyncio.selector_events`) start without
    the socket pair they wake themselves through. Waking one from elsewhere
    (`_write_to_self`) then does nothing, as it does once the loop is closed."""
    loop = selector_events.BaseSelectorEventLoop

    def _make_self_pipe(self):
        self._ssock = self._csock = None

    def _close_self_pipe(self):
        self._ssock = self._csock = None

    loop._make_self_pipe = _make_self_pipe
    loop._close_self_pipe = _close_self_pipe


def install():
    """Adds the missing calls to `os` and the modules `pwd` and `grp`, where absent, and
    lets asyncio's event loops start."""
    on_import.patch("asyncio.selector_events", _without_self_pipe)
    missing = {
        "getuid": lambda: UID,
        "geteuid": lambda: UID,
        "getgid": lambda: GID,
        "getegid": lambda: GID,
        "getppid": lambda: 1,
        "getlogin": lambda: USER,
        "getgroups": lambda: [GID],
    }
    for name, call in missing.items():
        if not hasattr(os, name):
            call.__name__ = name
            setattr(os, name, call)
    sys.modules.setdefault("pwd", _module(
        "pwd", "The password database: the sandbox's one user.",
        struct_passwd=struct_passwd,
        getpwuid=_lookup("getpwuid", "uid", UID, _PASSWD),
        getpwnam=_lookup("getpwnam", "name", USER, _PASSWD),
        getpwall=lambda: [_PASSWD],
    ))
    sys.modules.setdefault("grp", _module(
        "grp", "The group database: the sandbox's one group.",
        struct_group=struct_group,
        getgrgid=_lookup("getgrgid", "gid", GID, _GROUP),
        getgrnam=_lookup("getgrnam", "name", USER, _GROUP),
        getgrall=lambda: [_GROUP],
    ))
