"""The Parquet writer of `export` (`export.export` picks it for ``.parquet``/``.pq`` or
``format="parquet"``).

For pandas, polars, DuckDB, Spark, TOPCAT and the LSDB/HATS tools. Needs pyarrow (the
``parquet`` extra: ``pip install 'obiwan_h5[parquet]'``). Each batch of ``batch_rows``
rows becomes one Parquet row group, written at once by ``pyarrow.parquet.ParquetWriter``
while a helper thread reads and converts the next one (`export_common.read_ahead`; pyarrow
writes without the GIL): memory is bounded by about three batches whatever the size of the
table. Compression is zstd.

Columns keep the HDF5 names and dtypes: integers of the same width and signedness,
booleans, float32/float64; ``S<n>`` text becomes Parquet strings (UTF-8; the bytes as
stored, e.g. ``"REX "`` with its padding), since every reader of Parquet handles strings
and few handle fixed-width binary; 2-D columns (N, k) become fixed-size lists of k items.
Each field carries its ``unit`` and ``description`` in its field metadata; the schema
metadata key ``obiwan_h5`` holds one JSON document: ``attributes`` (the file attributes:
provenance, match radius, bit definitions), ``bit_definitions`` (a list of ``{mask, bit,
name, meaning}``), ``units``, ``descriptions`` and ``export`` (what was exported).

With ``summary``, the per-brick table (`export_common.summary_table`) goes to a second
file beside the first, ``<stem>.summary.parquet`` (`summary_path`), written the same way.
"""

import contextlib
import json
import os

import numpy as np

from .. import __version__
from ..core.bricks import DEFAULT_SEED
from ..outputs import writing
from .export_common import FORMATS, export_source, read_ahead, summary_table
from .metadata import bit_definitions, plain, table_meta
from .reader import DEFAULT_BATCH_ROWS

__all__ = ["COMPRESSION", "METADATA_KEY", "export_parquet", "summary_path"]

COMPRESSION = "zstd"
METADATA_KEY = "obiwan_h5"


def summary_path(output):
    """Where the summary of an export to `output` goes: ``x.parquet`` -> ``x.summary.parquet``."""
    stem = str(output)
    for suffix in FORMATS["parquet"]:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return stem + ".summary.parquet"


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ModuleNotFoundError("Parquet export needs pyarrow: pip install 'obiwan_h5[parquet]' "
                                  "(or pip install pyarrow)", name="pyarrow") from None
    return pa, pq


def export_parquet(path, output, columns=None, bricks=None, where=None, summary=False,
                   batch_rows=DEFAULT_BATCH_ROWS, overwrite=False, sample=None, seed=DEFAULT_SEED, progress=False):
    """Write chosen rows and columns of `path` to the Parquet file `output`.

    The parameters are those of `export.export`; `batch_rows` is also the size of a row
    group (the last one may be shorter); `summary` writes the per-brick table to
    `summary_path` (output).

    Returns
    -------
    dict
        ``columns``, ``rows`` written, ``row_groups``, ``summary_rows``, ``summary_output``
        (None without `summary`).
    """
    pa, pq = _pyarrow()
    extra = (summary_path(output),) if summary else ()
    with export_source(path, output, columns, bricks, where, batch_rows, overwrite, extra, sample=sample,
                       seed=seed, progress=progress) as source:
        derived, chosen, bricks, batches = source
        infos = {name: derived.column_info(name) for name in chosen}
        schema = _schema(pa, infos, _metadata(path, derived, infos, where, bricks))
        rows = groups = 0
        with writing(output) as partial:
            with pq.ParquetWriter(partial.path, schema, compression=COMPRESSION) as writer:
                # the next row group is read and converted while pyarrow writes this one
                tables = (_table(pa, schema, chunk) for chunk in _rechunk(batches, chosen, batch_rows))
                # closed on any error too: the thread stops before the source file is closed
                with contextlib.closing(read_ahead(tables)) as ahead:
                    for table in ahead:
                        writer.write_table(table, row_group_size=table.num_rows)
                        rows += table.num_rows
                        groups += 1
                if not groups:
                    writer.write_table(schema.empty_table())
            summary_rows = _write_summary(pa, pq, extra[0], path, derived, bricks) if summary else 0
    return {"columns": chosen, "rows": rows, "row_groups": groups, "summary_rows": summary_rows,
            "summary_output": extra[0] if summary else None}


def _rechunk(batches, names, batch_rows):
    """Batches of exactly `batch_rows` rows (the last one shorter) from batches of any size
    (a `where` filter or brick ranges make them smaller); holds at most about two batches."""
    if not names:
        return
    pending, count = [], 0
    for batch in batches:
        n = len(batch[names[0]])
        if not n:
            continue
        pending.append(batch)
        count += n
        while count >= batch_rows:
            merged = _concat(pending, names)
            yield {name: values[:batch_rows] for name, values in merged.items()}
            rest = {name: values[batch_rows:] for name, values in merged.items()}
            count -= batch_rows
            pending = [rest] if count else []
    if count:
        yield _concat(pending, names)


def _concat(parts, names):
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([part[name] for part in parts]) for name in names}


def _arrow_type(pa, dtype, shape):
    dtype = np.dtype(dtype)
    if dtype.kind == "S":
        kind = pa.string()
    elif dtype.kind == "b":
        kind = pa.bool_()
    else:
        kind = pa.from_numpy_dtype(dtype.newbyteorder("="))
    for size in reversed(tuple(shape)):
        kind = pa.list_(kind, int(size))
    return kind


def _field_metadata(unit, description):
    meta = {}
    if unit:
        meta[b"unit"] = str(unit).encode()
    if description:
        meta[b"description"] = str(description).encode()
    return meta or None


def _schema(pa, infos, metadata):
    fields = [pa.field(name, _arrow_type(pa, info["dtype"], info["shape"]),
                       metadata=_field_metadata(info["unit"], info["description"]))
              for name, info in infos.items()]
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})


def _column(pa, values, kind):
    """One numpy column as an arrow array of type `kind`."""
    values = np.asarray(values)
    if values.dtype.kind == "S":
        return pa.array(values).cast(pa.string())  # checks UTF-8
    if values.ndim > 1:
        flat = _column(pa, values.reshape((-1,) + values.shape[2:]), kind.value_type)
        return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
    return pa.array(values, type=kind)


def _table(pa, schema, data):
    return pa.Table.from_arrays([_column(pa, data[field.name], field.type) for field in schema], schema=schema)


def _metadata(path, derived, infos, where, bricks):
    attrs = table_meta(derived.attrs)
    return {
        "attributes": attrs,
        "bit_definitions": [{"mask": mask, "bit": bit, "name": name, "meaning": meaning}
                            for mask, bit, name, meaning in bit_definitions(attrs)],
        "units": {name: str(info["unit"]) for name, info in infos.items() if info["unit"]},
        "descriptions": {name: str(info["description"]) for name, info in infos.items()},
        "export": {"software": f"obiwan_h5 {__version__}", "source": os.path.basename(path),
                   "where": where, "bricks": len(bricks) if bricks is not None else len(derived.bricknames)},
    }


def _write_summary(pa, pq, output, path, derived, bricks):
    """The per-brick table of the chosen bricks (`export_common.summary_table`; small: one go)."""
    data, infos = summary_table(derived, bricks)
    metadata = {"attributes": table_meta(derived.attrs),
                "descriptions": {name: str(info["description"]) for name, info in infos.items()},
                "units": {name: str(info["unit"]) for name, info in infos.items() if info["unit"]},
                "export": {"software": f"obiwan_h5 {__version__}", "source": os.path.basename(path)}}
    schema = _schema(pa, infos, plain(metadata))
    with writing(output) as partial:
        pq.write_table(_table(pa, schema, data), partial.path, compression=COMPRESSION)
    return len(next(iter(data.values()))) if data else 0
