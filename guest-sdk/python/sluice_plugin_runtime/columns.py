"""Turns the columns the host sends into the row dicts plugins expect.

The host passes each table (and each query result) as columns in compact encodings (see
`Marshal::column` in `runtime/door/src/marshal.rs`): numbers as little-endian bytes, strings
as a dictionary of distinct values plus one index per row. Decoding a column is a few C
calls; building the rows is one comprehension with a dict display, generated once per
set of column names. Only tables with missing values take the slower per-row path.

A column here is a tuple `(name, kind, payload, present)`: `kind` is one of `tag`,
`string`, `int`, `uint`, `float`, `boolean`, `time`; `payload` is `bytes`, or for the
two string kinds a pair `(values, indices)`; `present` is `None` or one byte per row.
"""

_NUMBER_FORMATS = {"int": "q", "uint": "Q", "float": "d", "time": "q"}

# Row builders by column names; bounded, since names come from data.
_ROW_BUILDERS = {}
_MAX_ROW_BUILDERS = 512


def decode(kind, payload):
    """The column's values as a list of Python objects."""
    if kind == "tag" or kind == "string":
        values, indices = payload
        return list(map(values.__getitem__, memoryview(indices).cast("I")))
    if kind == "boolean":
        return list(map(bool, payload))
    return memoryview(payload).cast(_NUMBER_FORMATS[kind]).tolist()


def _row_builder(names):
    builder = _ROW_BUILDERS.get(names)
    if builder is None:
        variables = ", ".join(f"c{i}" for i in range(len(names)))
        entries = ", ".join(f"{name!r}: c{i}" for i, name in enumerate(names))
        builder = eval(f"lambda columns: [{{{entries}}} for {variables}, in zip(*columns)]")
        if len(_ROW_BUILDERS) >= _MAX_ROW_BUILDERS:
            _ROW_BUILDERS.clear()
        _ROW_BUILDERS[names] = builder
    return builder


def rows_from_columns(row_count, columns, missing_as_none):
    """Returns `row_count` row dicts built from `columns`.

    A row without a value for a column gets `None` for it when `missing_as_none` (query
    results), or no key at all (WAL rows, as upstream).
    """
    if not columns:
        return [{} for _ in range(row_count)]
    names = tuple(c[0] for c in columns)
    values = [decode(kind, payload) for _, kind, payload, _ in columns]
    if all(c[3] is None for c in columns):
        return _row_builder(names)(values)
    presence = [c[3] for c in columns]
    rows = []
    for i in range(row_count):
        row = {}
        for name, column_values, present in zip(names, values, presence):
            if present is None or present[i]:
                row[name] = column_values[i]
            elif missing_as_none:
                row[name] = None
        rows.append(row)
    return rows
