"""`obiwan_h5.open`, row filters, and astropy's unified I/O."""

import shutil

import h5py
import numpy as np
import pytest
from astropy.table import Table

import obiwan_h5
from obiwan_h5.core.expression import Expression
from obiwan_h5.errors import (
    ExpressionError,
    FormatError,
    IncompleteFileWarning,
    InputError,
    UnknownNameError,
    UnreadableFileError,
)
from obiwan_h5.read.common import open_derived
from obiwan_h5.read.reader import parse_columns


def test_read_columns_bricks_and_where(dr5_derived):
    with h5py.File(dr5_derived, "r") as raw:
        mask = raw["randoms/obiwan_mask"][:]
        g = raw["randoms/psql_g"][:]
        ra = raw["randoms/ra"][:]
        names = raw["bricks/name"][:]
        offsets, counts = raw["bricks/offset"][:], raw["bricks/count"][:]
    with obiwan_h5.open(dr5_derived) as derived:
        table = derived.read("ra, psql_g", where="obiwan_mask & 1 and psql_g < 23")
        keep = ((mask & 1) > 0) & (g < 23)
        assert table.colnames == ["ra", "psql_g"]
        assert np.array_equal(table["ra"], ra[keep]) and keep.sum() > 0
        assert str(table["ra"].unit) == "deg" and table["ra"].description
        brick = names[2].decode()
        one = derived.read(["ra"], bricks=[brick], as_="numpy")
        assert np.array_equal(one["ra"], ra[offsets[2]:offsets[2] + counts[2]])
        batches = list(derived.iter_batches(["ra"], batch_rows=100))
        assert all(len(batch["ra"]) <= 100 for batch in batches)
        assert np.array_equal(np.concatenate([b["ra"] for b in batches]), ra)
        summary = derived.summary("brickname,n_inj", bricks=brick)
        assert list(summary["n_inj"]) == [counts[2]]


def test_only_requested_columns_are_read(dr5_derived, monkeypatch):
    read = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        read.append(self.name)
        return original(self, key)

    with obiwan_h5.open(dr5_derived) as derived:
        monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
        derived.read(["dec"], where="psql_g < 23")
    assert set(read) == {"/randoms/dec", "/randoms/psql_g"}


def test_unknown_names_suggest_close_matches(dr5_derived):
    with obiwan_h5.open(dr5_derived) as derived:
        with pytest.raises(KeyError, match="did you mean tractor_flux_g"):
            derived.read("tractor_flx_g")
        with pytest.raises(KeyError, match="unknown brick"):
            derived.read("ra", bricks=["9999p999"])
        with pytest.raises(KeyError, match="in `where`"):
            derived.read("ra", where="psql_gg < 3")


def test_the_reader_raises_the_package_errors_where_they_start(dr5_derived, tmp_path):
    """The reader's errors are the package's (one-line, `InputError`) and the builtins it
    raised before (`KeyError`, `OSError`, `ValueError`); the reading commands pass them on
    as they are, rather than wrap them again."""
    with obiwan_h5.open(dr5_derived) as derived:
        for call in (lambda: derived.read("tractor_flx_g"), lambda: derived.read("ra", bricks=["9999p999"]),
                     lambda: derived.read("ra", where="psql_gg < 3"), lambda: derived.summary(bricks=["9999p999"])):
            with pytest.raises(UnknownNameError) as caught:
                call()
            assert isinstance(caught.value, KeyError) and isinstance(caught.value, InputError)
            assert str(caught.value).startswith("unknown ")  # a sentence, not a quoted key
        # a text column compared with a number: the filter's error, not numpy's
        with pytest.raises(ExpressionError, match="`where` 'tractor_type < 3': cannot be evaluated"):
            derived.read("ra", where="tractor_type < 3")
    not_hdf5 = tmp_path / "text.h5"
    not_hdf5.write_text("not HDF5")
    for opener in (obiwan_h5.open, open_derived):
        with pytest.raises(UnreadableFileError, match="text.h5: not a readable HDF5 file") as caught:
            opener(str(not_hdf5))
        assert isinstance(caught.value, OSError) and isinstance(caught.value, InputError)
    broken = tmp_path / "broken.h5"
    shutil.copy(dr5_derived, broken)
    with h5py.File(broken, "r+") as raw:
        del raw["summary"]
    for opener in (obiwan_h5.open, open_derived):
        with pytest.raises(FormatError, match="incomplete obiwan_h5 layout"):
            opener(str(broken))


def test_column_globs_keep_file_order():
    available = ["ra", "dec", "tractor_flux_g", "tractor_flux_r", "psql_g"]
    assert parse_columns("tractor_flux_* ra", available) == ["tractor_flux_g", "tractor_flux_r", "ra"]
    assert parse_columns(["dec,ra"], available) == ["dec", "ra"]
    with pytest.raises(KeyError, match="no column matches"):
        parse_columns("nothing_*", available)


def test_astropy_unified_io_detects_format(dr5_derived):
    table = Table.read(dr5_derived, columns=["unique_id", "tractor_flux_g"])
    assert table.colnames == ["unique_id", "tractor_flux_g"]
    assert str(table["tractor_flux_g"].unit) == "nmgy"
    explicit = Table.read(dr5_derived, format="obiwan_h5", columns="ra")
    assert len(explicit) == len(table)


def test_incomplete_file_warns(dr5_derived, tmp_path):
    path = tmp_path / "partial.h5"
    shutil.copy(dr5_derived, path)
    with h5py.File(path, "r+") as raw:
        raw.attrs["complete"] = False
    with pytest.warns(IncompleteFileWarning):
        obiwan_h5.open(str(path)).close()


def test_not_a_derived_file(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as raw:
        raw["x"] = [1]
    with pytest.raises(ValueError, match="not an obiwan_h5 derived file"):
        obiwan_h5.open(str(path))


def test_expression_subset_and_safety():
    columns = {"a": np.array([1, 2, 3, 4]), "t": np.array([b"REX ", b"PSF ", b"REX ", b"EXP "])}
    assert Expression("a > 1 and not a == 3").evaluate(columns).tolist() == [False, True, False, True]
    assert Expression("(a & 1) | (t == 'PSF ')").evaluate(columns).tolist() == [True, True, True, False]
    assert Expression("1 < a <= 3").evaluate(columns).tolist() == [False, True, True, False]
    # FITS strings are space padded; comparisons ignore the padding either way
    assert Expression("t == 'REX'").evaluate(columns).tolist() == [True, False, True, False]
    assert Expression("t != 'REX '").evaluate(columns).tolist() == [False, True, False, True]
    assert Expression("mag(a) < 22.5").names == ["a"]
    for bad in ("__import__('os')", "a.real", "[a]", "a if a else a", "open('x')"):
        with pytest.raises(ExpressionError):
            Expression(bad)


@pytest.mark.parametrize("order", ["obiwan_h5 first", "astropy first"])
def test_astropy_format_registered_whatever_the_import_order(dr5_derived, order):
    import subprocess
    import sys

    imports = ["import obiwan_h5", "from astropy.table import Table"]
    if order == "astropy first":
        imports.reverse()
    code = "; ".join(imports + [f"print(len(Table.read({dr5_derived!r}, columns='ra')))",
                                "import sys; print('astropy' in sys.modules)"])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rows, _ = result.stdout.split()
    with h5py.File(dr5_derived, "r") as raw:
        assert int(rows) == len(raw["randoms/ra"])


def test_importing_the_package_does_not_import_astropy():
    import subprocess
    import sys

    code = "import sys, obiwan_h5; print('astropy.table' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# every reading entry point that takes `where`: (columns asked, where), the where naming
# columns not asked, some asked, or all asked; globs too
WHERE_CASES = [(["ra"], "psql_g < 23"), ("dec, ra", "obiwan_mask & 1 and psql_g < 23"),
               (["ra", "psql_g"], "psql_g < 23"), ("tractor_flux_*", "psql_g < 23 and tractor_flux_g > 0"),
               (["ra"], None)]


@pytest.mark.parametrize("columns, where", WHERE_CASES)
def test_every_reading_entry_point_gives_exactly_the_columns_asked(dr5_derived, columns, where):
    from obiwan_h5.read.astropy_io import read_table

    with obiwan_h5.open(dr5_derived) as derived:
        expected = parse_columns(columns, derived.columns)
        batches = list(derived.iter_batches(columns, where=where, batch_rows=100))
        assert len(batches) > 2
        assert all(list(batch) == expected for batch in batches), [list(batch) for batch in batches]
        rows = sum(len(batch[expected[0]]) for batch in batches)
        assert 0 < rows <= derived.nrows and (where is None) == (rows == derived.nrows)
        as_numpy = derived.read(columns, where=where, as_="numpy")
        assert list(as_numpy) == expected and len(as_numpy[expected[0]]) == rows
        assert derived.read(columns, where=where).colnames == expected
        assert list(derived.to_pandas(columns, where=where).columns) == expected
    assert read_table(dr5_derived, columns=columns, where=where).colnames == expected
    assert Table.read(dr5_derived, format="obiwan_h5", columns=columns, where=where).colnames == expected
