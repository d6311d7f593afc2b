"""`LineBuilder`: builds one line of line protocol, as the InfluxDB 3 plugin API does.

Plugins use it without importing it: the runtime installs `LineBuilder` as a builtin
before any plugin code runs. The escaping rules and error texts match the upstream
processing engine byte for byte.
"""


class InfluxDBError(Exception):
    """Base class for errors raised while building a line."""


class InvalidMeasurementError(InfluxDBError):
    """The measurement name is not usable."""


class InvalidKeyError(InfluxDBError):
    """A tag or field key is empty or contains a space, comma or equals sign."""


class InvalidLineError(InfluxDBError):
    """The line cannot be built, for example because it has no field."""


# Every method runs once per line a plugin writes, and inside the sandbox each string
# search or function call costs hundreds of instructions. So keys found valid are not
# checked again, and escaped names and tag values (which repeat from line to line) are
# looked up in bounded caches rather than escaped anew.

_CACHE_SIZE = 4096


def _escape_measurement(name):
    if "," in name or " " in name:
        return name.replace(",", "\\,").replace(" ", "\\ ")
    return name


def _escape_tag(text):
    if "\\" in text or "," in text or "=" in text or " " in text:
        return (
            text.replace("\\", "\\\\")
            .replace(",", "\\,")
            .replace("=", "\\=")
            .replace(" ", "\\ ")
        )
    return text


def _cached(cache, escape, text):
    """`escape(text)`, kept in `cache` (emptied when full) if `text` is a `str` without
    NUL or SOH: what is found in a cache is one (`line_shapes` relies on it)."""
    escaped = escape(text)
    if type(text) is str and "\0" not in text and "\1" not in text:
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        cache[text] = escaped
    return escaped


_ESCAPED_MEASUREMENTS = {}
_ESCAPED_TAGS = {}  # tag values and field keys


def _float_text(value):
    """A `float64_field` value as upstream writes it."""
    return f"{int(value)}.0" if value % 1 == 0 else str(value)


def _escape_string(text):
    return text.replace("\\", "\\\\").replace('"', '\\"')


# Keys found valid (bounded: keys come from plugins).
_VALID_KEYS = set()
_MAX_VALID_KEYS = 4096


def _check_key(key, kind):
    """Validates a key not in `_VALID_KEYS` (callers check that first, inline)."""
    _validate_key(key, kind)
    if type(key) is str and len(_VALID_KEYS) < _MAX_VALID_KEYS:
        _VALID_KEYS.add(key)


def _validate_key(key, kind):
    if not key:
        raise InvalidKeyError(f"{kind} key cannot be empty")
    if " " in key:
        raise InvalidKeyError(f"{kind} key '{key}' cannot contain spaces")
    if "," in key:
        raise InvalidKeyError(f"{kind} key '{key}' cannot contain commas")
    if "=" in key:
        raise InvalidKeyError(f"{kind} key '{key}' cannot contain equals signs")


class LineBuilder:
    """Builds a line of line protocol; every method but `build` returns `self`."""

    __slots__ = ("measurement", "tags", "fields", "_timestamp_ns")

    def __init__(self, measurement):
        if " " in measurement:
            raise InvalidMeasurementError("Measurement name cannot contain spaces")
        self.measurement = measurement
        # Insertion-ordered, and a key set again keeps its place, as upstream's
        # OrderedDict.
        self.tags = {}
        self.fields = {}
        self._timestamp_ns = None

    def tag(self, key, value):
        if key not in _VALID_KEYS:
            _check_key(key, "tag")
        # Exactly a `str`: a subclass could format itself otherwise on each build.
        self.tags[key] = value if type(value) is str else str.__str__(str(value))
        return self

    def int64_field(self, key, value):
        if key not in _VALID_KEYS:
            _check_key(key, "field")
        self.fields[key] = f"{value}i"
        return self

    def uint64_field(self, key, value):
        if key not in _VALID_KEYS:
            _check_key(key, "field")
        if value < 0:
            raise ValueError(f"uint64 field '{key}' cannot be negative")
        self.fields[key] = f"{value}u"
        return self

    def float64_field(self, key, value):
        if key not in _VALID_KEYS:
            _check_key(key, "field")
        # A float is kept as it is and formatted when the line is built (by the host,
        # for a line written).
        self.fields[key] = value if type(value) is float else _float_text(value)
        return self

    def string_field(self, key, value):
        if key not in _VALID_KEYS:
            _check_key(key, "field")
        self.fields[key] = f'"{_escape_string(value)}"'
        return self

    def bool_field(self, key, value):
        if key not in _VALID_KEYS:
            _check_key(key, "field")
        self.fields[key] = "t" if value else "f"
        return self

    def time_ns(self, timestamp_ns):
        self._timestamp_ns = timestamp_ns
        return self

    def build(self):
        return self._line(None)

    def _line(self, floats):
        """`build()`, or with `floats` (a list) the line for the host's `write`: a NUL
        in place of each float value, which is appended to `floats`."""
        measurement = self.measurement
        try:
            line = _ESCAPED_MEASUREMENTS[measurement]
        except KeyError:
            line = _cached(_ESCAPED_MEASUREMENTS, _escape_measurement, measurement)
        # In the sandbox `for key in dict` and a lookup cost less than `.items()`.
        tags = self.tags
        for key in tags:
            value = tags[key]
            try:
                value = _ESCAPED_TAGS[value]
            except KeyError:
                value = _cached(_ESCAPED_TAGS, _escape_tag, value)
            line = f"{line},{key}={value}"  # cheaper than `+=` of an f-string
        fields = self.fields
        if not fields:
            raise InvalidLineError(f"At least one field is required: {line}")
        separator = " "
        for key in fields:
            value = fields[key]
            try:
                key = _ESCAPED_TAGS[key]
            except KeyError:
                key = _cached(_ESCAPED_TAGS, _escape_tag, key)
            if type(value) is float:
                if floats is None:
                    value = _float_text(value)
                else:
                    floats.append(value)
                    value = "\0"
            line = f"{line}{separator}{key}={value}"
            separator = ","
        if self._timestamp_ns is not None:
            return f"{line} {self._timestamp_ns}"
        return line
