"""Time-zone data for `zoneinfo`, built into the runtime.

WASI's CPython finds no system time-zone database (`TZPATH` names directories the
sandbox does not have), so `zoneinfo.ZoneInfo("Europe/Paris")` would fail unless a
plugin installed the `tzdata` package. The build puts that package's wheel in the
generated module `sluice_tzdata`; `install` reads its zones into memory while the runtime
is pre-initialised, and has `zoneinfo` look there when it finds a zone nowhere else. A
`tzdata` the plugin installed comes first, so a plugin may have newer data.
"""

import base64
import io
import sys
import zipfile
import zoneinfo
from zoneinfo import _common

# Where the zones are inside the wheel.
_PREFIX = "tzdata/zoneinfo/"


def _zones(wheel):
    """{key: TZif bytes} of every zone in the `tzdata` wheel `wheel`."""
    zones = {}
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        for info in archive.infolist():
            name = info.filename
            if name.startswith(_PREFIX) and not info.is_dir() and not name.endswith(".py"):
                data = archive.read(info)
                # Only TZif files: the package's other files (`tzdata.zi`, lists) are not
                # zones.
                if data.startswith(b"TZif"):
                    zones[name[len(_PREFIX):]] = data
    return zones


def install():
    """Serves the built-in zones to `zoneinfo`, if the build provided them."""
    try:
        import sluice_tzdata
    except ImportError:
        return
    zones = _zones(base64.b64decode(sluice_tzdata.WHEEL))
    # The wheel's text is not needed again: out of the snapshot.
    del sys.modules["sluice_tzdata"]
    load_installed = _common.load_tzdata
    available_installed = zoneinfo.available_timezones

    def load_tzdata(key):
        try:
            return load_installed(key)
        except zoneinfo.ZoneInfoNotFoundError:
            data = zones.get(key)
            if data is None:
                raise
            return io.BytesIO(data)

    def available_timezones():
        return available_installed() | set(zones)

    # `_zoneinfo` looks `load_tzdata` up on `zoneinfo._common` at each miss.
    _common.load_tzdata = load_tzdata
    zoneinfo.available_timezones = available_timezones
