"""Truth column names (`production.truth`, `core.schema.column_name_problem`): matched in
lower case once, so that names differing only in case are refused naming both (never one
column silently holding the other's values, or dropped), and a name that HDF5 would read as
a path is refused; also for every FITS input. The database table: tests/job/test_truthdb.py."""

import fitsio
import h5py
import numpy as np
import pytest

from obiwan_h5.cli import main
from obiwan_h5.errors import InputError
from obiwan_h5.production.inputs import FitsTable
from obiwan_h5.production.truth import TruthTable


def _rows(*names):
    rows = np.zeros(3, dtype=[("id", "i8")] + [(name, "f4") for name in names])
    rows["id"] = [1, 2, 3]
    for number, name in enumerate(names):
        rows[name] = number + 1
    return rows


def test_fits_columns_differing_only_in_case_are_refused(tmp_path):
    path = str(tmp_path / "randoms.fits")
    fitsio.write(path, _rows("g", "q"))  # fitsio refuses to write 'g' and 'G': rename in the header
    data = open(path, "rb").read()
    assert data.count(b"TTYPE3  = 'q") == 1
    open(path, "wb").write(data.replace(b"TTYPE3  = 'q", b"TTYPE3  = 'G"))
    with pytest.raises(InputError, match="columns 'g' and 'G' differ only in case"):
        TruthTable(path)
    with pytest.raises(InputError, match="randoms.fits: columns 'g' and 'G'"):
        FitsTable(path)  # any FITS input alike


@pytest.mark.parametrize("compound", [False, True])
def test_hdf5_columns_differing_only_in_case_are_refused(tmp_path, compound):
    path = str(tmp_path / "randoms.h5")
    rows = _rows("g", "G")
    with h5py.File(path, "w") as handle:
        if compound:
            handle["randoms"] = rows
        else:
            for name in rows.dtype.names:
                handle[name] = rows[name]
    with pytest.raises(InputError, match="randoms.h5: columns '(g|G)' and '(g|G)' differ only in case"):
        TruthTable(path)


def test_a_column_named_like_a_path_is_refused_at_derive(dr5_production, tmp_path, capsys):
    """``a/b`` would become the group ``psql_a`` holding ``b``: a file whose index every
    reader then calls broken. derive refuses the truth table before writing anything."""
    original = fitsio.read(f"{dr5_production}/randoms.fits")
    rows = np.zeros(len(original), dtype=original.dtype.descr + [("a/b", "f4")])
    for name in original.dtype.names:
        rows[name] = original[name]
    randoms = tmp_path / "randoms.fits"
    fitsio.write(str(randoms), rows)
    output = tmp_path / "out.h5"
    assert main(["derive", "--data-dir", dr5_production, "-o", str(output), "--randoms", str(randoms)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "column 'a/b' cannot name an HDF5 dataset" in err[0], err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["randoms.fits"]


def test_a_truth_table_without_rows_is_refused(tmp_path):
    path = str(tmp_path / "randoms.fits")
    fitsio.write(path, _rows("g")[:0])
    with pytest.raises(InputError, match="randoms.fits: the randoms truth table has no rows"):
        TruthTable(path)
