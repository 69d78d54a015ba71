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


def test_checksums_of_a_round_equal_each_brick_on_its_own():
    """`rows_checksums` views each column once for many bricks: each brick's CRC is the
    CRC-32 of its rows' bytes column after column (2-D and string columns too), as
    `rows_checksum` of its rows alone; no brick, no CRC."""
    import zlib

    import numpy as np

    from obiwan_h5.fileformat import rows_checksum, rows_checksums

    rng = np.random.default_rng(2)
    columns = {"a": rng.normal(size=50), "b": rng.integers(0, 9, (50, 6)).astype(np.int16),
               "c": np.array([b"x" * (i % 7) for i in range(50)], "S7")}
    names = sorted(columns)
    ranges = [(0, 0), (0, 17), (17, 18), (30, 50)]
    expected = [zlib.crc32(b"".join(columns[name][lo:hi].tobytes() for name in names)) for lo, hi in ranges]
    assert rows_checksums(columns, names, ranges) == expected
    assert [rows_checksum({name: values[lo:hi] for name, values in columns.items()}, names)
            for lo, hi in ranges] == expected
    assert len(set(expected)) == len(expected)
    assert rows_checksums({}, names, []) == []
