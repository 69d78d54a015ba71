"""The header cards shared by the FITS table writers (`read.fits_header`)."""

import fitsio
import numpy as np

from obiwan_h5.read.fits_header import CARD_TEXT, card_text, write_descriptions, write_empty_primary


def test_card_text_keeps_what_fits_and_cuts_visibly_what_does_not():
    exact = "x" * CARD_TEXT
    assert card_text(exact) == exact
    cut = card_text("y" * (CARD_TEXT + 1))
    assert cut.endswith("...") and len(cut) == CARD_TEXT
    # a quote is written doubled in a card, so it takes two characters of the width
    quoted = card_text("'" * 40)
    assert quoted.endswith("...") and 2 * quoted.count("'") + 3 <= CARD_TEXT
    assert card_text("abc", width=3) == "abc" and card_text("abcd", width=3) == "..."


def test_descriptions_and_the_empty_primary_make_a_file_fitsio_reads(tmp_path):
    path = str(tmp_path / "t.fits")
    open(path, "wb").close()
    write_empty_primary(path)
    with fitsio.FITS(path, "rw") as fits:
        fits.write(np.zeros(2, dtype=[("a", "f4"), ("b", "i4")]), extname="T")
        write_descriptions(fits["T"], ["first column", ""])
    with fitsio.FITS(path) as fits:
        assert fits[0].read_header()["NAXIS"] == 0
        header = fits["T"].read_header()
    assert header["TCOMM1"] == "first column" and "TCOMM2" not in header
