"""The lean FITS binary-table reader must read exactly what fitsio reads."""

import glob
import os

import fitsio
import numpy as np
import pytest

from obiwan_h5.production.fitstable import BinaryTable, Unsupported
from obiwan_h5.production.inputs import FitsTable, normalise_array


def _assert_same_as_fitsio(path, rows=None):
    reference = fitsio.read(path, rows=rows)
    got = BinaryTable(path).read(rows=rows)
    records = BinaryTable(path).read_records(rows=rows)
    for name in reference.dtype.names:  # one record array must hold exactly the same columns
        assert records[name].dtype == got[name].dtype and records[name].shape == got[name].shape
        assert np.array_equal(records[name], got[name], equal_nan=got[name].dtype.kind == "f"), name
    assert list(got) == list(reference.dtype.names)
    for name in reference.dtype.names:
        want = normalise_array(reference[name])
        assert got[name].dtype == want.dtype, (path, name)
        assert got[name].shape == want.shape, (path, name)
        assert np.array_equal(got[name], want, equal_nan=want.dtype.kind == "f"), (path, name)


def test_real_samples(real_dir):
    for path in sorted(glob.glob(os.path.join(real_dir, "*.fits"))):
        _assert_same_as_fitsio(path)


def test_simulated_catalogs_both_schemas(dr5_production, dr3_production):
    for root in (dr5_production, dr3_production):
        paths = sorted(glob.glob(os.path.join(root, "**", "*.fits"), recursive=True))
        assert len(paths) > 10
        for path in paths:
            _assert_same_as_fitsio(path)
        _assert_same_as_fitsio(os.path.join(root, "randoms.fits"), rows=[5, 0, 3, 3])


def test_unsigned_signed_byte_bool_and_string_arrays(tmp_path):
    path = str(tmp_path / "odd.fits")
    data = np.zeros(4, dtype=[("u2", "u2"), ("u4", "u4"), ("i1", "i1"), ("flags", "?", (2,)),
                              ("labels", "S3", (2,)), ("cube", "f4", (2, 3)), ("UPPER", "i8")])
    data["u2"] = [0, 65535, 3, 32768]
    data["u4"] = [0, 4294967295, 7, 2147483648]
    data["i1"] = [-128, 127, 0, -1]
    data["flags"] = [[True, False], [False, True], [True, True], [False, False]]
    data["labels"] = [[b"ab", b"c"], [b"", b"xyz"], [b"q", b"r"], [b"", b""]]
    data["cube"] = np.arange(24).reshape(4, 2, 3)
    fitsio.write(path, data)
    _assert_same_as_fitsio(path)
    table = BinaryTable(path)
    assert table.read(["u4"])["u4"].tolist() == [0, 4294967295, 7, 2147483648]
    assert FitsTable(path).schema["upper"] == (np.dtype("i8"), ())


def test_empty_table(tmp_path):
    path = str(tmp_path / "empty.fits")
    fitsio.write(path, np.zeros(0, dtype=[("id", "i8"), ("ra", "f8")]))
    assert BinaryTable(path).read()["id"].shape == (0,)


def test_unsupported_files_fall_back_to_fitsio(real_dir, tmp_path):
    gz = os.path.join(real_dir, "survey-bricks-testcase_decals_z.fits.gz")
    with pytest.raises(Unsupported):
        BinaryTable(gz)
    assert FitsTable(gz).read(["brickname"])["brickname"].tolist() == [b"1741p242"]
    truncated = tmp_path / "cut.fits"
    original = os.path.join(real_dir, "tractor-3301m002.fits")
    source = open(original, "rb").read()
    truncated.write_bytes(source[: BinaryTable(original).data_offset + 10])
    with pytest.raises(Unsupported, match="shorter than its table"):
        BinaryTable(str(truncated))


def test_some_columns_of_a_large_table_are_read_in_blocks(dr5_production, monkeypatch):
    import obiwan_h5.production.fitstable as fitstable

    path = os.path.join(dr5_production, "randoms.fits")
    whole = BinaryTable(path).read(["id", "g"])
    monkeypatch.setattr(fitstable, "BLOCK_READ_BYTES", 1000)  # a few rows per block
    reads = []
    original = BinaryTable._raw

    def counting(self, rows=None):
        reads.append(rows)
        return original(self, rows)

    monkeypatch.setattr(BinaryTable, "_raw", counting)
    blocked = BinaryTable(path).read(["id", "g"])
    assert len(reads) > 10 and all(isinstance(rows, slice) for rows in reads)
    assert np.array_equal(blocked["id"], whole["id"]) and np.array_equal(blocked["g"], whole["g"])
    assert np.array_equal(whole["id"], fitsio.read(path, columns=["id"])["id"])


@pytest.mark.parametrize("load", ["read", "map"])
def test_tables_loaded_from_their_one_open_read_what_fitsio_reads(real_dir, dr5_production, dr3_production,
                                                                   tmp_path, monkeypatch, load):
    """Headers and rows from one descriptor (read into memory, or mapped), the same values
    as fitsio's; a header longer than the first read, and an empty table, too."""
    import obiwan_h5.production.inputs as inputs

    wide = str(tmp_path / "wide.fits")  # 500 columns: a header of ~80 KB, past the first read
    fitsio.write(wide, np.zeros(3, dtype=[(f"c{i}", ">f4") for i in range(500)]))
    empty = str(tmp_path / "empty.fits")
    fitsio.write(empty, np.zeros(0, dtype=[("id", "i8"), ("flag", "?")]))
    paths = [os.path.join(real_dir, "tractor-3301m002.fits"), wide, empty]
    for production in (dr5_production, dr3_production):
        paths += sorted(glob.glob(os.path.join(production, "tractor", "*", "*", "rs0", "*.fits")))[:1]
        paths += sorted(glob.glob(os.path.join(production, "obiwan", "*", "*", "rs0", "simcat-*.fits")))[:1]
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, *args, **kwargs: opened.append(path) or real_open(path, *args, **kwargs))
    tables = [inputs.FitsTable(path, load=load) for path in paths]
    assert opened == paths  # one open each, none later: every byte comes from that descriptor
    monkeypatch.undo()
    got = tables[2].read()
    assert tables[2].nrows == 0 and got["id"].dtype == np.int64 and got["flag"].dtype == np.bool_
    assert len(got["id"]) == len(got["flag"]) == 0
    for path, table in zip(paths, tables):
        if path == empty:
            continue
        reference = fitsio.read(path)
        got = table.read()
        assert table.nrows == len(reference) and table.size == os.path.getsize(path)
        for name in reference.dtype.names:
            want = normalise_array(reference[name])
            assert got[name.lower()].dtype == want.dtype, (path, name)
            assert np.array_equal(got[name.lower()], want, equal_nan=want.dtype.kind == "f"), (path, name)


def test_a_mapped_catalog_gives_back_its_pages_and_still_gathers_its_rows(real_dir):
    """A mapped Tractor catalog keeps its positions; its pages go back after each use
    (`BinaryTable.release`) and come back from the page cache: rows gathered after that are
    the rows `read_tractor` gives."""
    from obiwan_h5.production.inputs import primary_tractor, read_tractor

    path = os.path.join(real_dir, "tractor-3301m002.fits")
    whole = read_tractor(path)
    lazy = primary_tractor(FitsTable(path, load="map"))
    assert np.array_equal(lazy.column("ra"), whole["ra"]) and np.array_equal(lazy.column("dec"), whole["dec"])
    for index in (np.array([len(whole) - 1, 0, 3, 3]), np.arange(len(whole))[::-5]):
        records = lazy.gather(index)  # each gather gives its pages back
        for name in whole.dtype.names:
            values = np.empty_like(whole[name][index])
            values[...] = lazy.values(records, name)
            assert np.array_equal(values, whole[name][index], equal_nan=values.dtype.kind == "f"), name
