"""Turns the columns the host sends into the row dicts plugins expect.

The host passes each table (and each query result) as typed columns. Plugins written for
InfluxDB 3 expect a list of dicts, one per row, holding only the columns that row has.
Dense tables, the common case, are zipped in C; only tables with missing values take
the slower per-row path.
"""


def rows_from_columns(row_count, columns, missing_as_none):
    """Returns `row_count` row dicts built from `columns`.

    Each column has `.name`, `.values.value` (a list) and `.present` (None when every
    row has a value, else one bool per row). A row without a value for a column gets
    `None` for it when `missing_as_none` (query results), or no key at all (WAL rows).
    """
    names = [c.name for c in columns]
    values = [c.values.value for c in columns]
    if all(c.present is None for c in columns):
        return [dict(zip(names, row)) for row in zip(*values)] if columns else [
            {} for _ in range(row_count)
        ]
    presence = [c.present for c in columns]
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
