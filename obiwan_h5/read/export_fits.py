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

import os
import textwrap

import numpy as np

from .. import __version__
from ..core.bricks import DEFAULT_SEED
from ..fileformat import mask_value
from ..outputs import check_free_space, writing
from .export_common import export_source, summary_table
from .metadata import bit_definitions, fits_unit
from .reader import DEFAULT_BATCH_ROWS

__all__ = ["export_fits"]

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
        with writing(output) as partial:
            _empty_primary(partial.path)
            with fitsio.FITS(partial.path, "rw") as fits:
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
                summary_rows = _write_summary(fits, derived, bricks) if summary else 0
    return {"columns": chosen, "rows": rows, "summary_rows": summary_rows}


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
        text = f"{mask} bit {bit} (value {mask_value([bit])}) {name}: {meaning}"
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


def _empty_primary(path):
    """An empty primary HDU, as cfitsio writes it, into the new (empty) file at `path`:
    fitsio cannot open an empty file, and creating it anew would drop the partial's lock."""
    cards = ["SIMPLE  =                    T / file does conform to FITS standard",
             "BITPIX  =                    8 / number of bits per data pixel",
             "NAXIS   =                    0 / number of data axes",
             "EXTEND  =                    T / FITS dataset may contain extensions",
             "END"]
    with open(path, "wb") as handle:
        handle.write("".join(card.ljust(80) for card in cards).ljust(2880).encode("ascii"))


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
    _describe(hdu, [info["description"] for info in infos.values()])
    if nrows:
        hdu.append(table)
    return nrows
