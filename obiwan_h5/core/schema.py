"""Per-brick schemas joined into one, rows conformed to it, columns as records, the
columns of many tables placed into a schema's buffers: pure numpy.

`place_tables` reads *tables*, objects with

- ``names``: their lower-case column names, ``schema``: ``{name: (dtype, shape)}``;
- ``key``: hashable, equal for tables of the same records and names;
- ``len(table)``; ``row_bytes``: the bytes of one record `gather` returns;
- ``column(name)``: one column of every row as a native array;
- ``gather(index)``: the records of rows `index`, in any form the table likes;
- ``values(records, name)``: column `name` of such records, assignable to a native array.

`ArrayTable` is one for columns in memory; `production.inputs.CatalogRows` one for FITS
catalogs whose records are converted only as they are placed.
"""

import numpy as np

from ..errors import InputError
from ..fileformat import fill_value

__all__ = ["ArrayTable", "Positions", "as_records", "column_name_problem", "conform_into", "join_pieces", "place_tables",
           "union_schemas"]


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


def union_schemas(schemas, owners="bricks"):
    """Merge per-brick ``{name: (dtype, shape)}`` schemas into one (order of first sight).

    Strings widen to the widest; other dtypes must agree (numpy promotion is *not* applied:
    an int column that is float in another brick is bad input, not silently promoted).
    `owners` names what the schemas belong to in the `InputError` (``"bricks"``,
    ``"rsdirs of 1741p242"``).
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
                raise InputError(f"column {name} has shape {shape} in some {owners} and {known_shape} in others")
            if known.kind == dtype.kind == "S":
                merged[name] = (np.dtype(f"S{max(known.itemsize, dtype.itemsize)}"), shape)
            elif known != dtype:
                raise InputError(f"column {name} is {dtype} in some {owners} and {known} in others")
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
    """A brick's pieces (`core.derivation.brick_pieces`, one per rsdir) as one table, joined as the
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


class ArrayTable:
    """Columns in memory (a dict of equal-length arrays, or a record array) as a table
    `derive_rows` reads."""

    def __init__(self, columns):
        self.records = as_records(columns) if isinstance(columns, dict) else np.asarray(columns)
        self.names = list(self.records.dtype.names)
        self.key = self.records.dtype
        self.dtype = self.records.dtype
        self.row_bytes = self.records.dtype.itemsize

    def __len__(self):
        return len(self.records)

    @property
    def schema(self):
        """{name: (dtype, shape)} of its columns."""
        fields = self.records.dtype.fields
        return {name: (fields[name][0].base, fields[name][0].shape) for name in self.names}

    def __getitem__(self, name):
        return self.records[name]

    def column(self, name):
        """One column of every row, as stored."""
        return self.records[name]

    def gather(self, index):
        """The records of rows `index`."""
        # rows as opaque bytes: numpy copies those whole, structured ones field by field
        opaque = self.records.view(np.dtype((np.void, self.records.dtype.itemsize)))
        return opaque[np.asarray(index, dtype=np.int64)].view(self.records.dtype)

    def values(self, records, name):
        """Column `name` of records `gather` returned."""
        return records[name]

    def take(self, index):
        """The records of rows `index` (`gather`)."""
        return self.gather(index)


class Positions:
    """Buffer rows of pieces (each ``sizes[i]`` rows from ``starts[i]``): a slice when they
    are contiguous, else an index array; `of` the rows of some pieces."""

    def __init__(self, starts, sizes):
        self.starts = np.asarray(starts, dtype=np.int64)
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.all = self.of(np.arange(len(self.sizes)))

    def of(self, chosen):
        """The buffer rows of pieces `chosen`: a slice when they are contiguous, else indices."""
        starts, sizes = self.starts[chosen], self.sizes[chosen]
        if len(starts) == 0:
            return slice(0, 0)
        if np.all(starts[1:] == starts[:-1] + sizes[:-1]):
            return slice(int(starts[0]), int(starts[-1] + sizes[-1]))
        return np.repeat(starts - (np.cumsum(sizes) - sizes), sizes) + np.arange(int(sizes.sum()))

    def indices(self, chosen):
        """The buffer rows of pieces `chosen`, always as an index array."""
        rows = self.of(chosen)
        return np.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows


def place_tables(rows, family, prefix, tables, picks, positions):
    """Place the columns of each piece's table in the buffers: for the pieces whose tables
    share a key, one gather of their records and one assignment per column, in chunks of
    at most `GATHER_BYTES` of records (memory holds the buffers and one chunk, gathered
    into the same scratch memory chunk after chunk).

    `picks` gives, per piece, the table row of each of its buffer rows (-1: none, filled);
    None means every row of the table, in order; `positions` (`Positions`) the buffer
    rows of the pieces. Columns of `family` a table lacks are filled over its pieces' rows.
    """
    groups = {}
    for number, table in enumerate(tables):
        groups.setdefault(table.key, []).append(number)
    scratch = np.empty(0, np.uint8)
    for members in groups.values():
        chunk, nbytes = [], 0
        for number in members:
            pick = np.arange(len(tables[number])) if picks is None else picks[number]
            if chunk and nbytes + len(pick) * tables[number].row_bytes > GATHER_BYTES:
                scratch = _place_chunk(rows, family, prefix, tables, chunk, positions, scratch)
                chunk, nbytes = [], 0
            chunk.append((number, pick))
            nbytes += len(pick) * tables[number].row_bytes
        if chunk:
            scratch = _place_chunk(rows, family, prefix, tables, chunk, positions, scratch)


# records gathered at once by `place_tables`
GATHER_BYTES = 8 << 20


def _place_chunk(rows, family, prefix, tables, chunk, positions, scratch):
    """`place_tables` of one chunk of pieces; returns the scratch memory, grown if needed."""
    members = np.array([number for number, _ in chunk])
    chosen = [pick for _, pick in chunk]
    first = tables[chunk[0][0]]
    found = np.concatenate(chosen) >= 0
    target = positions.of(members)
    if found.all():
        hit, miss = target, None
    elif isinstance(target, slice) and all(len(tables[number]) for number in members):
        # contiguous rows: gather a stand-in row for the unmatched ones, so that every
        # column is one plain slice assignment; then fill the unmatched rows
        chosen = [np.maximum(pick, 0) for pick in chosen]
        hit, miss = target, positions.indices(members)[~found]
    else:
        chosen = [pick[pick >= 0] for pick in chosen]
        target = positions.indices(members)
        hit, miss = target[found], target[~found]
    records, scratch = _gather(tables, members, chosen, scratch)
    names = set(first.names)
    for name in first.names:
        column = prefix + name
        if column not in rows:
            raise InputError(f"{getattr(first, 'path', 'a catalog')}: column {name} is not in the plan "
                             "(inputs changed since the scan?)")
        rows[column][hit] = first.values(records, name)
        if miss is not None and len(miss):
            rows[column][miss] = fill_value(rows[column].dtype)
    for column in family:
        if column[len(prefix):] not in names:
            rows[column][target] = fill_value(rows[column].dtype)
    return scratch


def _gather(tables, members, chosen, scratch):
    """The records of the chosen rows of each member's table, one after the other, in
    `scratch` memory (grown when too small): a fresh block of megabytes per chunk would be
    page faults each time. Returns the records and the scratch memory."""
    parts = [tables[number].gather(pick) for number, pick in zip(members, chosen)]
    dtype = parts[0].dtype
    nbytes = sum(len(part) for part in parts) * dtype.itemsize
    if nbytes > len(scratch):
        scratch = np.empty(nbytes, np.uint8)
    # joined as opaque bytes: numpy would otherwise promote the record dtype piece by piece
    opaque = np.dtype((np.void, dtype.itemsize))
    joined = scratch[:nbytes].view(opaque)
    np.concatenate([part.view(opaque) for part in parts], out=joined)
    return joined.view(dtype), scratch
