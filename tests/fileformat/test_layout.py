"""The fixed-width status message keeps what a user needs from a long message."""
from obiwan_h5.fileformat import MESSAGE_WIDTH, truncate_message


def test_short_message_is_kept_whole():
    assert truncate_message("ValueError: bad") == b"ValueError: bad"


def test_long_path_keeps_the_reason_and_marks_the_cut():
    path = "/global/cfs/cdirs/desi/users/someone/" + "deep/" * 30 + "rs1/simcat-elg-1253p160.fits"
    stored = truncate_message(f"{path}: 1 row(s) with non-finite ra/dec")
    assert len(stored) == MESSAGE_WIDTH
    assert stored.startswith(b"/global/cfs/")
    assert b"..." in stored
    assert stored.endswith(b"simcat-elg-1253p160.fits: 1 row(s) with non-finite ra/dec")


def test_cut_through_a_multibyte_character_stays_valid_utf8():
    for shift in range(4):
        stored = truncate_message("x" * shift + "é" * 200)
        assert len(stored) <= MESSAGE_WIDTH
        stored.decode("utf-8")  # raises if a character was split
