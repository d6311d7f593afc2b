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
    """`escape(text)`, kept in `cache` (emptied when full)."""
    escaped = escape(text)
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[text] = escaped
    return escaped


_ESCAPED_MEASUREMENTS = {}
_ESCAPED_TAGS = {}  # tag values and field keys


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
        self.tags[key] = str(value)
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
        if type(value) is float:
            # The same as below for a float, without a floating-point modulo. A finite
            # fraction is kept as a float and formatted when the line is built.
            if value.is_integer():
                text = f"{int(value)}.0"
            elif value - value == 0.0:
                text = value
            else:
                text = repr(value)  # inf, nan
        else:
            text = f"{int(value)}.0" if value % 1 == 0 else str(value)
        self.fields[key] = text
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

    def _line_for_write(self, floats):
        """The line for the host's `write`: a NUL in place of each float value kept
        unformatted, the values appended to `floats` (an `array('d')`). None, with
        `floats` unchanged, if the line holds a NUL of its own, which would pass for a
        placeholder."""
        count = len(floats)
        try:
            line = self._line(floats)
        except BaseException:
            del floats[count:]
            raise
        if line.count("\0") != len(floats) - count:
            del floats[count:]
            return None
        return line

    def _line(self, floats):
        """`build()`, or `_line_for_write(floats)` before its check."""
        measurement = self.measurement
        try:
            line = _ESCAPED_MEASUREMENTS[measurement]
        except KeyError:
            line = _cached(_ESCAPED_MEASUREMENTS, _escape_measurement, measurement)
        for key, value in self.tags.items():
            try:
                value = _ESCAPED_TAGS[value]
            except KeyError:
                value = _cached(_ESCAPED_TAGS, _escape_tag, value)
            line += f",{key}={value}"
        if not self.fields:
            raise InvalidLineError(f"At least one field is required: {line}")
        separator = " "
        for key, value in self.fields.items():
            try:
                key = _ESCAPED_TAGS[key]
            except KeyError:
                key = _cached(_ESCAPED_TAGS, _escape_tag, key)
            if type(value) is float:
                if floats is None:
                    value = repr(value)
                else:
                    floats.append(value)
                    value = "\0"
            line += f"{separator}{key}={value}"
            separator = ","
        if self._timestamp_ns is not None:
            line += f" {self._timestamp_ns}"
        return line
