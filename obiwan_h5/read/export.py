"""`obiwan-h5 export`: stream a derived file (or part of it) into a FITS table (here) or a
Parquet file (`export_parquet`); `export` picks the format from the output's suffix.

    obiwan-h5 export derived.h5 -o derived.fits --summary
    obiwan-h5 export derived.h5 -o elg.fits --columns 'unique_id,ra,dec,psql_*,tractor_flux_*' \\
        --where 'targets_mask & 4'

For legacy FITS scripts and TOPCAT. The table HDU ``RANDOMS`` is created empty with the
final column layout, then rows are appended batch by batch as `reader.DerivedFile.iter_batches`
reads them, so memory is bounded by ``--batch-rows`` whatever the size of the table.

Columns keep the HDF5 names (those of the old derived tables: ``unique_id``, ``psql_g``,
``tractor_flux_g``, ...) and dtypes: integers stay integers of the same width, ``uint8``
masks are FITS unsigned bytes (``B``), booleans FITS logicals (``L``), ``S<n>`` strings
``<n>A``, 2-D columns (N, k) vector columns (``kE`` ...). ``TUNIT<i>`` is the dataset's
``unit`` attribute in the Legacy Surveys' spelling (``nanomaggy``, ``1/nanomaggy^2``, as
their catalogs write them: the FITS standard has no maggy) with powers in the standard's
syntax (``deg2``, ``deg-2``, `metadata.fits_unit`). ``TCOMM<i>`` is its description (the
convention TOPCAT shows). The header is self-describing: the bits of ``obiwan_mask`` and
``targets_mask`` as ``OBWBITn``/``TGTBITn`` keywords (bit name; meaning in the comment) and
in full in COMMENT cards, the match radius (``MATCHRAD``) and provenance (``H5SWVER``,
``H5DATE``, a HISTORY card with the command line). Only rows of bricks that are done are
exported (rows of other bricks hold no valid data). ``--summary`` adds the table HDU
``SUMMARY``: one row per exported brick.

astropy reads the file without warnings with ``Table.read(path, hdu="RANDOMS",
unit_parse_strict="silent")`` (``nanomaggy`` is not a FITS-standard unit, so astropy's
strict FITS unit parser would warn once per such column); see docs/reading.md.
"""

import contextlib
import itertools
import os
import textwrap

import numpy as np

from .. import __version__
from ..core.bricks import DEFAULT_SEED, brick_names
from ..errors import ExpressionError, InputError
from ..progress import start_progress
from .common import (
    check_output,
    input_files,
    open_derived,
    partial_output,
    sample_bricks,
    select_bricks,
    select_columns,
)
from .metadata import bit_definitions, fits_unit
from .reader import DEFAULT_BATCH_ROWS

__all__ = ["FORMATS", "export", "export_fits", "export_format", "export_source"]

# export formats and the output suffixes that choose them
FORMATS = {"fits": (".fits", ".fit"), "parquet": (".parquet", ".pq")}

# one FITS card holds a string value of at most 68 characters; longer descriptions are
# cut (visibly) instead of spilling into the CONTINUE convention that some readers lack
CARD_TEXT = 68
# the text of one COMMENT card (80 characters less the keyword field)
COMMENT_TEXT = 72
# header keywords of the bits of each mask: OBWBIT0, TGTBIT2 ...
MASK_KEYWORDS = {"obiwan_mask": "OBWBIT", "targets_mask": "TGTBIT"}


def export_fits(path, output, columns=None, bricks=None, where=None, summary=False,
                batch_rows=DEFAULT_BATCH_ROWS, overwrite=False, sample=None, seed=DEFAULT_SEED, progress=False):
    """Write chosen rows and columns of `path` to the FITS file `output`.

    Parameters
    ----------
    path : str
        Derived file (or a view of one).
    output : str
        FITS file, written through ``output + ".partial"``.
    columns : str or list of str, optional
        Names or globs; every column when None.
    bricks : str or list of str, optional
        Only these bricks (and, with `summary`, only their summary rows): names, or a
        brick-list file (`core.bricks.brick_names`).
    where : str, optional
        Row filter (`expression.Expression`).
    summary : bool
        Add the HDU ``SUMMARY``.
    batch_rows : int
        Rows read and appended at a time.
    overwrite : bool
    sample : float, optional
        Only a random fraction (0 < sample <= 1, at least one brick) of the chosen bricks
        (`common.sample_bricks`).
    seed : int
        Seed of `sample`: the same seed gives the same bricks.
    progress : bool or progress.ProgressStyle
        Show the rows read out of those of the chosen bricks on stderr
        (`obiwan_h5.progress`); off by default.

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
        with partial_output(output) as partial:
            with fitsio.FITS(partial, "rw", clobber=True) as fits:
                fits.create_table_hdu(dtype=dtype, extname="RANDOMS",
                                      units=[fits_unit(info["unit"]) for _, info in layout])
                hdu = fits["RANDOMS"]
                _describe(hdu, [_fits_description(name, info["description"]) for name, info in layout])
                _provenance(hdu, path, derived, where, bricks)
                _bits(hdu, derived.attrs)
                for batch in batches:
                    n = len(batch[chosen[0]]) if chosen else 0
                    if n:
                        table = np.empty(n, dtype=dtype)
                        for name in chosen:
                            table[name] = batch[name]
                        hdu.append(table)
                        rows += n
                summary_rows = 0
                if summary:
                    summary_rows = _write_summary(fits, path, derived, bricks)
    return {"columns": chosen, "rows": rows, "summary_rows": summary_rows}


def export_format(output, format=None):
    """``"fits"`` or ``"parquet"``: `format` if given, else from the suffix of `output`."""
    if format is not None:
        if format not in FORMATS:
            raise InputError(f"`format` {format!r}: choose one of {', '.join(FORMATS)}")
        return format
    lower = str(output).lower()
    for name, suffixes in FORMATS.items():
        if lower.endswith(suffixes):
            return name
    if lower.endswith((".gz", ".fz", ".bz2")):
        raise InputError(f"{output}: compressed FITS is not written directly (it could not be streamed); "
                         "write .fits and compress it afterwards (gzip, or fpack for images)")
    raise InputError(f"{output}: cannot tell the format from the suffix; name it "
                     f"{' or '.join(s for suffixes in FORMATS.values() for s in suffixes)}, or give `format`")


def export(path, output, format=None, **options):
    """Export to FITS (`export_fits`) or Parquet (`export_parquet.export_parquet`).

    The format is `format` (``"fits"`` or ``"parquet"``) or, when None, the suffix of
    `output` (``.fits``, ``.fit``, ``.parquet``, ``.pq``); `options` are those of the
    chosen function (``columns``, ``bricks``, ``where``, ``summary``, ``batch_rows``,
    ``overwrite``, ``sample``, ``seed``, ``progress``).
    """
    if export_format(output, format) == "parquet":
        from .export_parquet import export_parquet

        return export_parquet(path, output, **options)
    return export_fits(path, output, **options)


@contextlib.contextmanager
def export_source(path, output, columns, bricks, where, batch_rows, overwrite, extra_outputs=(), sample=None,
                  seed=DEFAULT_SEED, progress=False):
    """Open `path` for an export: ``(derived, chosen columns, bricks in file order or None,
    batches)``, with every choice and `where` checked before any output is made; with
    `sample`, the bricks are a seeded random fraction of those chosen; with `progress`, the
    rows read are shown out of those of the chosen done bricks."""
    if batch_rows < 1:
        raise InputError(f"`batch_rows` {batch_rows}: must be at least 1")
    with open_derived(path) as derived:
        chosen = select_columns(columns, derived.columns)
        if bricks is not None:
            bricks = select_bricks(derived, brick_names(bricks))
        if sample is not None:
            bricks = sample_bricks(list(derived.bricknames) if bricks is None else bricks, sample, seed)
        for name in (output, *extra_outputs):
            check_output(name, overwrite, inputs=input_files(path))
        total = sum(stop - start for start, stop in derived.brick_ranges(bricks))
        shown = start_progress(progress, total, "rows", "export")
        try:
            batches = derived.iter_batches(chosen, bricks=bricks, where=where, batch_rows=batch_rows,
                                           on_read=lambda n: shown.update(n, rows=n))
            first = next(batches, None)  # parses `where` and checks its names before any output
        except (KeyError, ExpressionError) as err:
            raise InputError(err.args[0] if err.args else str(err)) from None
        except (TypeError, ValueError) as err:  # e.g. a string column compared with a number
            raise InputError(f"`where` {where!r}: cannot be evaluated ({err})") from None
        yield derived, chosen, bricks, itertools.chain([] if first is None else [first], batches)
        shown.close()


def _table_dtype(fields):
    """Structured dtype of a FITS table; h5py's string dtypes carry an encoding in their
    metadata, which fitsio cannot take, so every field is rebuilt from its plain code."""
    return np.dtype([(name, np.dtype(kind.str), tuple(shape)) for name, kind, shape in fields])


def _describe(hdu, descriptions):
    for number, text in enumerate(descriptions, 1):
        if text:
            hdu.write_key(f"TCOMM{number}", _card_text(text))


def _fits_description(name, text):
    """A column's description; the masks point to the header cards that define their bits
    (in the HDF5 file they point to a file attribute, which a FITS file does not have)."""
    if name in MASK_KEYWORDS:
        return f"{name} bits: see {MASK_KEYWORDS[name]}n keywords and COMMENT cards"
    return text


def _bits(hdu, attrs):
    """The bit definitions of both masks as header keywords (``OBWBIT0 = 'recovered'``,
    ``TGTBIT2 = 'desi_elg'``, meaning in the card's comment) and, in full, COMMENT cards."""
    bits = bit_definitions(attrs)
    if not bits:
        return
    hdu.write_comment("Bits of obiwan_mask (OBWBITn) and targets_mask (TGTBITn):")
    hdu.write_comment("bit n has value 2**n; a row has the bit when (mask & 2**n) != 0.")
    for mask, bit, name, meaning in bits:
        keyword = f"{MASK_KEYWORDS[mask]}{bit}"
        if len(keyword) <= 8:
            hdu.write_key(keyword, name, comment=_card_text(meaning, 44))
        text = f"{mask} bit {bit} (value {1 << bit}) {name}: {meaning}"
        for line in textwrap.wrap(text, COMMENT_TEXT, subsequent_indent="  "):
            hdu.write_comment(line)


def _card_text(text, width=None):
    """`text` cut to fit one card; a quote is written doubled in FITS, so it counts twice."""
    width = width or CARD_TEXT
    text = str(text)
    if _card_length(text) <= width:
        return text
    while _card_length(text) > width - 3:
        text = text[:-1]
    return text + "..."


def _card_length(text):
    return len(text) + text.count("'")


def _provenance(hdu, path, derived, where, bricks):
    attrs = derived.attrs
    hdu.write_key("ORIGIN", _card_text(f"obiwan_h5 {__version__} export"))
    hdu.write_key("H5FILE", _card_text(os.path.basename(path)), comment="derived HDF5 file")
    if "software_version" in attrs:
        hdu.write_key("H5SWVER", _card_text(attrs["software_version"]), comment="obiwan_h5 that wrote the HDF5 file")
    if "creation_time" in attrs:
        hdu.write_key("H5DATE", _card_text(attrs["creation_time"]), comment="creation time of the HDF5 file")
    if attrs.get("command_line"):
        for line in textwrap.wrap(f"HDF5 file made by: {attrs['command_line']}", COMMENT_TEXT):
            hdu.write_history(line)
    if "format_version" in attrs:
        hdu.write_key("H5FMTVER", int(attrs["format_version"]), comment="obiwan_h5 format version")
    if "match_radius_arcsec" in attrs:
        hdu.write_key("MATCHRAD", float(attrs["match_radius_arcsec"]), comment="[arcsec] match radius")
    hdu.write_key("NBRICKS", len(bricks) if bricks is not None else len(derived.bricknames),
                  comment="bricks selected (rows of done bricks exported)")
    if where:
        hdu.write_key("WHERE", _card_text(where), comment="row filter")


def _write_summary(fits, path, derived, bricks):
    """The HDU SUMMARY: one row per brick (small: read whole)."""
    import h5py

    names = derived.summary_columns
    data = derived.summary(names, bricks=bricks, as_="numpy")
    with h5py.File(path, "r") as source:
        meta = [(name, source["summary"][name].dtype, source["summary"][name].shape[1:],
                 source["summary"][name].attrs.get("unit", ""),
                 source["summary"][name].attrs.get("description", "")) for name in names]
    dtype = _table_dtype([(name, kind, shape) for name, kind, shape, _, _ in meta])
    nrows = len(data[names[0]]) if names else 0
    table = np.empty(nrows, dtype=dtype)
    for name in names:
        table[name] = data[name]
    fits.create_table_hdu(dtype=dtype, extname="SUMMARY", units=[fits_unit(unit) for *_, unit, _ in meta])
    hdu = fits["SUMMARY"]
    _describe(hdu, [text for *_, text in meta])
    if nrows:
        hdu.append(table)
    return nrows
