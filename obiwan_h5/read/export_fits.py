"""The FITS writer of `export` (`export.export` picks it for ``.fits``/``.fit`` or ``format="fits"``).

For legacy FITS scripts and TOPCAT. The table HDU ``RANDOMS`` is created empty with the
final column layout, then rows are appended batch by batch as `export_common.export_source`
reads them, so memory is bounded by ``batch_rows`` whatever the size of the table.

Columns keep the HDF5 names and dtypes: integers stay integers of the same width, ``uint8``
masks are FITS unsigned bytes (``B``), booleans FITS logicals (``L``), ``S<n>`` strings
``<n>A``, 2-D columns (N, k) vector columns (``kE`` ...). ``TUNIT<i>`` is the dataset's
``unit`` attribute in the Legacy Surveys' spelling (``nanomaggy``, ``1/nanomaggy^2``, as
their catalogs write them: the FITS standard has no maggy) with powers in the standard's
syntax (``deg2``, ``deg-2``, `metadata.fits_unit`). ``TCOMM<i>`` is its description (the
convention TOPCAT shows). The header is self-describing: the bits of ``obiwan_mask`` and
``targets_mask`` as ``OBWBITn``/``TGTBITn`` keywords (bit name; meaning in the comment) and
in full in COMMENT cards, the match radius (``MATCHRAD``) and provenance (``H5SWVER``,
``H5DATE``, a HISTORY card with the command line). ``summary`` adds the table HDU
``SUMMARY``: one row per exported brick (`export_common.summary_table`).

astropy reads the file without warnings with ``Table.read(path, hdu="RANDOMS",
unit_parse_strict="silent")`` (``nanomaggy`` is not a FITS-standard unit, so astropy's
strict FITS unit parser would warn once per such column); see docs/reading.md.
"""


import numpy as np

from ..core.bricks import DEFAULT_SEED
from ..outputs import check_free_space, writing
from .export_common import export_source, summary_table
from .fits_header import (
    CARD_BYTES,
    FITS_BLOCK,
    MASK_KEYWORDS,
    write_bits,
    write_descriptions,
    write_empty_primary,
    write_provenance,
)
from .metadata import fits_unit
from .reader import DEFAULT_BATCH_ROWS

__all__ = ["export_fits"]



def export_fits(path, output, columns=None, bricks=None, where=None, summary=False,
                batch_rows=DEFAULT_BATCH_ROWS, overwrite=False, sample=None, seed=DEFAULT_SEED, progress=False):
    """Write chosen rows and columns of `path` to the FITS file `output`.

    The parameters are those of `export.export`; `summary` adds the HDU ``SUMMARY``.

    Returns
    -------
    dict
        ``columns``, ``rows`` written, ``summary_rows``.
    """
    import fitsio

    with export_source(path, output, columns, bricks, where, batch_rows, overwrite, sample=sample,
                       seed=seed, progress=progress) as source:
        derived, chosen, bricks, batches = source
        layout = [(name, derived.column_info(name)) for name in chosen]
        dtype = _table_dtype([(name, info["dtype"], info["shape"]) for name, info in layout])
        rows = 0
        if where is None:  # the size is known: refuse at once what cannot fit
            check_free_space(output, dtype.itemsize * sum(stop - start for start, stop in derived.brick_ranges(bricks)))
        stored = _stored_dtype(dtype) if chosen else None
        with writing(output) as partial:
            write_empty_primary(partial.path)
            with fitsio.FITS(partial.path, "rw") as fits:
                fits.create_table_hdu(dtype=dtype, extname="RANDOMS",
                                      units=[fits_unit(info["unit"]) for _, info in layout])
                hdu = fits["RANDOMS"]
                write_descriptions(hdu, [_fits_description(name, info["description"]) for name, info in layout])
                write_provenance(hdu, path, derived, where, bricks)
                write_bits(hdu, derived.attrs)
                if stored is None:
                    rows = _append_rows(hdu, batches, chosen, dtype)
                else:
                    offsets = hdu.get_offsets()
            if stored is not None:
                rows = _write_rows(partial.path, offsets, batches, chosen, stored)
            summary_rows = 0
            if summary:
                with fitsio.FITS(partial.path, "rw") as fits:
                    summary_rows = _write_summary(fits, derived, bricks)
    return {"columns": chosen, "rows": rows, "summary_rows": summary_rows}


def _stored_dtype(dtype):
    """The rows of a table of `dtype` as FITS stores them (big-endian; logicals as the
    bytes ``T`` and ``F``), or None when a column needs a conversion only fitsio makes
    (an offset ``TZERO``: unsigned integers wider than a byte, signed bytes)."""
    fields = []
    for name in dtype.names:
        base, shape = dtype[name].base, dtype[name].shape
        if base.kind == "f" or (base.kind == "i" and base.itemsize > 1):
            fields.append((name, base.newbyteorder(">"), shape))
        elif base.kind in "Sb" or base == np.dtype("u1"):
            fields.append((name, np.dtype("u1") if base.kind == "b" else base, shape))
        else:
            return None
    return np.dtype(fields)


def _append_rows(hdu, batches, chosen, dtype):
    """Append every batch to the table `hdu` through fitsio; the rows written."""
    rows = 0
    for batch in batches:
        n = len(batch[chosen[0]]) if chosen else 0
        if n:
            table = np.empty(n, dtype=dtype)
            for name in chosen:
                table[name] = batch[name]
            hdu.append(table)
            rows += n
    return rows


def _write_rows(path, offsets, batches, chosen, stored):
    """Write every batch as the data of the table HDU at `offsets` (fitsio's
    ``get_offsets`` of the table created empty, the last HDU of `path`), in the bytes
    fitsio would write (`_stored_dtype`) but in one pass per batch instead of cfitsio's
    buffered writes (several times faster); then the padding and the table's ``NAXIS2``.
    Returns the rows written."""
    rows = 0
    with open(path, "r+b") as handle:
        handle.seek(offsets["data_start"])
        for batch in batches:
            n = len(batch[chosen[0]])
            if not n:
                continue
            handle.write(_stored_rows(batch, chosen, stored, n).data)
            rows += n
        handle.write(bytes(-(rows * stored.itemsize) % FITS_BLOCK))
        handle.truncate()
        _set_naxis2(handle, offsets, rows)
    return rows


def _stored_rows(batch, chosen, stored, nrows):
    """The `nrows` rows of `batch` as FITS stores them (`_stored_dtype`)."""
    table = np.empty(nrows, dtype=stored)
    for name in chosen:
        values = batch[name]
        table[name] = np.where(values, ord("T"), ord("F")) if values.dtype.kind == "b" else values
    return table


def _set_naxis2(handle, offsets, rows):
    """Write `rows` into the ``NAXIS2`` card of the header at `offsets`, in place."""
    start = offsets["header_start"]
    handle.seek(start)
    header = handle.read(offsets["data_start"] - start)
    for at in range(0, len(header), CARD_BYTES):
        card = header[at:at + CARD_BYTES]
        if card[:8] == b"NAXIS2  ":
            handle.seek(start + at)
            handle.write(card[:10] + f"{rows:>20}".encode() + card[30:])
            return
    raise ValueError(f"{handle.name}: the table header has no NAXIS2 card")


def _table_dtype(fields):
    """Structured dtype of a FITS table; h5py's string dtypes carry an encoding in their
    metadata, which fitsio cannot take, so every field is rebuilt from its plain code."""
    return np.dtype([(name, np.dtype(kind.str), tuple(shape)) for name, kind, shape in fields])


def _fits_description(name, text):
    """A column's description; the masks point to the header cards that define their bits
    (in the HDF5 file they point to a file attribute, which a FITS file does not have)."""
    if name in MASK_KEYWORDS:
        return f"{name} bits: see {MASK_KEYWORDS[name]}n keywords and COMMENT cards"
    return text


def _write_summary(fits, derived, bricks):
    """The HDU SUMMARY: `export_common.summary_table` (small: written at once)."""
    data, infos = summary_table(derived, bricks)
    dtype = _table_dtype([(name, info["dtype"], info["shape"]) for name, info in infos.items()])
    nrows = len(next(iter(data.values()))) if data else 0
    table = np.empty(nrows, dtype=dtype)
    for name in data:
        table[name] = data[name]
    fits.create_table_hdu(dtype=dtype, extname="SUMMARY", units=[fits_unit(info["unit"]) for info in infos.values()])
    hdu = fits["SUMMARY"]
    write_descriptions(hdu, [info["description"] for info in infos.values()])
    if nrows:
        hdu.append(table)
    return nrows
