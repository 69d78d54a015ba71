"""Per-brick schemas joined into one, rows conformed to it, columns as records: pure numpy."""

import numpy as np

from ..errors import InputError
from ..fileformat import fill_value

__all__ = ["as_records", "column_name_problem", "conform_into", "join_pieces", "union_schemas"]


def column_name_problem(names):
    """Why `names` cannot be the columns of one input table, or None.

    The store names columns in lower case, matching an input's names case-insensitively
    once: two names that differ only in case would be one column (one silently losing its
    values), so they are refused, naming both. A name HDF5 would read as a path (``/``) or
    that is empty cannot name a dataset.
    """
    seen = {}
    for name in names:
        if not name.strip() or "/" in name or name in (".", ".."):
            return f"column {name!r} cannot name an HDF5 dataset (no '/', not empty): rename it"
        key = name.lower()
        if key in seen:
            return (f"columns {seen[key]!r} and {name!r} differ only in case, and obiwan_h5 matches column "
                    "names in lower case: rename one")
        seen[key] = name
    return None


def union_schemas(schemas, where="bricks"):
    """Merge per-brick ``{name: (dtype, shape)}`` schemas into one (order of first sight).

    Strings widen to the widest; other dtypes must agree (numpy promotion is *not* applied:
    an int column that is float in another brick is bad input, not silently promoted).
    """
    merged = {}
    for schema in schemas:
        for name, (dtype, shape) in schema.items():
            dtype, shape = np.dtype(dtype), tuple(shape)
            if name not in merged:
                merged[name] = (dtype, shape)
                continue
            known, known_shape = merged[name]
            if known_shape != shape:
                raise InputError(f"column {name} has shape {shape} in some {where} and {known_shape} in others")
            if known.kind == dtype.kind == "S":
                merged[name] = (np.dtype(f"S{max(known.itemsize, dtype.itemsize)}"), shape)
            elif known != dtype:
                raise InputError(f"column {name} is {dtype} in some {where} and {known} in others")
    return merged


def conform_into(buffers, start, columns, schema, nrows):
    """Write `columns` into rows ``[start, start + nrows)`` of `buffers` (name -> array),
    shaped as `schema`: missing columns filled (as unmatched rows), casts exact.

    Raises `InputError` on a column whose values would change in the cast.
    """
    stop = start + nrows
    for column in schema:
        values = columns.get(column.name)
        target = buffers[column.name]
        if values is None:
            target[start:stop] = fill_value(column.dtype)
            continue
        values = np.asarray(values)
        if values.dtype != column.dtype and values.dtype.kind != "S":
            cast = values.astype(column.dtype)
            if not np.array_equal(cast, values, equal_nan=values.dtype.kind == "f"):
                raise InputError(f"column {column.name}: {values.dtype} values do not fit {column.dtype}")
        target[start:stop] = values


def as_records(columns):
    """Columns (name -> array of equal length) as one record array."""
    names = list(columns)
    nrows = len(columns[names[0]]) if names else 0
    records = np.empty(nrows, dtype=[(name, columns[name].dtype, columns[name].shape[1:]) for name in names])
    for name in names:
        records[name] = columns[name]
    return records


def join_pieces(pieces):
    """A brick's per-rsdir pieces (`core.derivation.brick_parts`) as one table, joined as the
    job joins them: the union of their schemas, each piece conformed into it."""
    from ..fileformat import Column

    schema = union_schemas([{name: (values.dtype, values.shape[1:]) for name, values in piece.items()}
                            for piece in pieces])
    columns = [Column(name, dtype, shape) for name, (dtype, shape) in schema.items()]
    nrows = sum(len(piece["unique_id"]) for piece in pieces)
    rows = {column.name: np.empty((nrows,) + column.shape, column.dtype) for column in columns}
    start = 0
    for piece in pieces:
        conform_into(rows, start, piece, columns, len(piece["unique_id"]))
        start += len(piece["unique_id"])
    return rows
