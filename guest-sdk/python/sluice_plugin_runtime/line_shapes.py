"""Code generated per line shape, for the lines plugins write with `LineBuilder`.

Plugins usually write many lines of one shape: the same measurement, tag keys and field
keys and types, only the values differing. `LineBuilder._line` assembles any line, looping
over its tags and fields; for a shape seen before, a function generated for it assembles
the line with one f-string, its constant parts escaped once. In the sandbox that costs a
fraction of the general loop.

A shape function takes a builder and the lists of float values and timestamps being
handed over. It returns the line as `_line(floats)` would, with its floats appended, but
with a SOH in place of an `int` timestamp, which is appended to the timestamps; or None
(and appends nothing) when the builder does not have its shape or holds a value it leaves
to the general path: a tag value or string field with a NUL or SOH of its own, a
timestamp that is neither None nor an `int`. Its lines hold no NUL or SOH but the
placeholders, so they need no count.
"""

from sluice_plugin_runtime.line_builder import (
    _ESCAPED_TAGS,
    _cached,
    _escape_measurement,
    _escape_tag,
)

# The shape function of each measurement name: of the last shape learnt for it.
SHAPES = {}
# By measurement name, oldest first: each shape seen, with its function once it has one
# (None for a shape that cannot have one, `_SEEN_ONCE` before).
_KNOWN = {}
_SEEN_ONCE = object()
_MAX_MEASUREMENTS = 256
# A measurement written in more shapes than this is left to the general path.
_MAX_SHAPES_PER_MEASUREMENT = 8
# Larger shapes gain little and would make large functions.
_MAX_KEYS = 32


def learn(builder):
    """Makes the function for `builder`'s shape (which `_line` has just assembled, so it
    has fields) the one for its measurement. A function is generated when a shape is seen
    the second time, so that measurements written once each (or more of them in turn than
    are remembered) cost no code generation per line."""
    measurement = builder.measurement
    if type(measurement) is not str:
        return
    known = _KNOWN.get(measurement)
    if known is None:
        if len(_KNOWN) >= _MAX_MEASUREMENTS:
            oldest = next(iter(_KNOWN))
            del _KNOWN[oldest]
            SHAPES.pop(oldest, None)
        known = _KNOWN[measurement] = {}
    fields = builder.fields
    shape = (tuple(builder.tags), tuple(fields), tuple(type(fields[k]) is float for k in fields))
    function = known.get(shape)
    if function is None and shape not in known:
        if len(known) < _MAX_SHAPES_PER_MEASUREMENT:
            known[shape] = _SEEN_ONCE
        return
    if function is _SEEN_ONCE:
        function = known[shape] = _generate(builder)
    if function is None:
        SHAPES.pop(measurement, None)
    else:
        SHAPES[measurement] = function


def _generate(builder):
    tags = list(builder.tags)
    fields = list(builder.fields)
    names = [builder.measurement, *tags, *fields]
    if len(names) > _MAX_KEYS or any(type(n) is not str or "\0" in n or "\1" in n for n in names):
        return None
    float_fields = [type(builder.fields[k]) is float for k in fields]
    if not all(kind or type(builder.fields[k]) is str for k, kind in zip(fields, float_fields)):
        return None

    # The same keys in the same order: a key count and the lookups, or for several keys
    # a comparison of lists.
    body = ["t = b.tags", "f = b.fields"]
    for variable, keys in (("t", tags), ("f", fields)):
        if len(keys) < 2:
            body.append(f"if len({variable}) != {len(keys)}: return None")
        else:
            body.append(f"if list({variable}) != {keys!r}: return None")
    body.append("try:")
    body += [f"    v{i} = t[{key!r}]" for i, key in enumerate(tags)]
    body += [f"    x{i} = f[{key!r}]" for i, key in enumerate(fields)]
    body += ["except KeyError:", "    return None"]

    # The line's text as `_line` makes it: constants escaped here, values placed below.
    text = [_escape_measurement(builder.measurement)]
    for i, key in enumerate(tags):
        body += [
            "try:",
            f"    e{i} = _ESCAPED_TAGS[v{i}]",
            "except KeyError:",
            f"    if '\\0' in v{i} or '\\1' in v{i}: return None",
            f"    e{i} = _cached(_ESCAPED_TAGS, _escape_tag, v{i})",
        ]
        text += [f",{key}=", (f"e{i}",)]
    floats = []
    for i, (key, is_float) in enumerate(zip(fields, float_fields)):
        if is_float:
            body.append(f"if type(x{i}) is not float: return None")
            floats.append(f"x{i}")
            value = "\0"
        else:
            body.append(f"if type(x{i}) is not str or '\\0' in x{i} or '\\1' in x{i}: return None")
            value = (f"x{i}",)
        text += [" " if i == 0 else ",", f"{_escape_tag(key)}=", value]

    stamped = [*text, " \1"]
    body += [
        "s = b._timestamp_ns",
        "if s is None:",
        f"    line = {_f_string(text)}",
        "elif type(s) is int:",
        f"    line = {_f_string(stamped)}",
        "    stamps.append(s)",
        "else:",
        "    return None",
        *(f"floats.append({x})" for x in floats),
        "return line",
    ]
    source = "def shaped(b, floats, stamps):\n" + "".join(f"    {line}\n" for line in body)
    namespace = {"_ESCAPED_TAGS": _ESCAPED_TAGS, "_cached": _cached, "_escape_tag": _escape_tag}
    exec(source, namespace)
    return namespace["shaped"]


def _f_string(parts):
    """An f-string literal of `parts`: texts, and 1-tuples naming a variable."""
    pieces = []
    for part in parts:
        if type(part) is tuple:
            pieces.append("{" + part[0] + "}")
        else:
            pieces.append(part.replace("{", "{{").replace("}", "}}"))
    return "f" + repr("".join(pieces))
