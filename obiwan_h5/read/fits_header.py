"""FITS header cards shared by the table writers (`export_fits`, `maps_output`).

Each writer's table HDU describes itself with the same cards: a description per column
(``TCOMMn``, the convention TOPCAT shows), the bits of ``obiwan_mask`` and ``targets_mask``
(``OBWBITn``/``TGTBITn`` keywords and COMMENT cards) and the derived file's provenance
(``H5FILE``, ``H5SWVER``, ``H5DATE``, ``MATCHRAD``, a HISTORY card with its command line).
"""

import os
import textwrap

from .. import __version__
from ..fileformat import mask_value
from .metadata import bit_definitions

__all__ = ["CARD_BYTES", "CARD_TEXT", "COMMENT_TEXT", "FITS_BLOCK", "MASK_KEYWORDS", "card_text", "write_bits",
           "write_descriptions",
           "write_empty_primary", "write_provenance"]

# a FITS file is made of 2880-byte blocks; a header of 80-byte cards
FITS_BLOCK = 2880
CARD_BYTES = 80
# one FITS card holds a string value of at most 68 characters; longer descriptions are
# cut (visibly) instead of spilling into the CONTINUE convention that some readers lack
CARD_TEXT = 68
# the text of one COMMENT card (80 characters less the keyword field)
COMMENT_TEXT = 72
# header keywords of the bits of each mask: OBWBIT0, TGTBIT2 ...
MASK_KEYWORDS = {"obiwan_mask": "OBWBIT", "targets_mask": "TGTBIT"}


def write_descriptions(hdu, descriptions):
    """One ``TCOMMn`` card per column that has a description (`descriptions` in column order)."""
    for number, text in enumerate(descriptions, 1):
        if text:
            hdu.write_key(f"TCOMM{number}", card_text(text))


def write_bits(hdu, attrs):
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
            hdu.write_key(keyword, name, comment=card_text(meaning, 44))
        text = f"{mask} bit {bit} (value {mask_value([bit])}) {name}: {meaning}"
        for line in textwrap.wrap(text, COMMENT_TEXT, subsequent_indent="  "):
            hdu.write_comment(line)


def card_text(text, width=None):
    """`text` cut to fit one card; a quote is written doubled in FITS, so it counts twice."""
    width = width or CARD_TEXT
    text = str(text)
    if _card_length(text) <= width:
        return text
    while _card_length(text) > width - 3:
        text = text[:-1]
    return text + "..."


def _card_length(text):
    """The characters `text` takes in a card: a quote is written doubled."""
    return len(text) + text.count("'")


def write_provenance(hdu, path, derived, where, bricks):
    """Where the table comes from: the derived file at `path` (`derived`, open), its software,
    creation time and command line, the match radius, the bricks selected and the row filter."""
    attrs = derived.attrs
    hdu.write_key("ORIGIN", card_text(f"obiwan_h5 {__version__} export"))
    hdu.write_key("H5FILE", card_text(os.path.basename(path)), comment="derived HDF5 file")
    if "software_version" in attrs:
        hdu.write_key("H5SWVER", card_text(attrs["software_version"]), comment="obiwan_h5 that wrote the HDF5 file")
    if "creation_time" in attrs:
        hdu.write_key("H5DATE", card_text(attrs["creation_time"]), comment="creation time of the HDF5 file")
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
        hdu.write_key("WHERE", card_text(where), comment="row filter")


def write_empty_primary(path):
    """An empty primary HDU, as cfitsio writes it, into the new (empty) file at `path`:
    fitsio cannot open an empty file, and creating it anew would drop the partial's lock."""
    cards = ["SIMPLE  =                    T / file does conform to FITS standard",
             "BITPIX  =                    8 / number of bits per data pixel",
             "NAXIS   =                    0 / number of data axes",
             "EXTEND  =                    T / FITS dataset may contain extensions",
             "END"]
    with open(path, "wb") as handle:
        handle.write("".join(card.ljust(CARD_BYTES) for card in cards).ljust(FITS_BLOCK).encode("ascii"))
