"""Readers trust no brick index: overlapping, out-of-range or missing index datasets are
one clear error (and `validate` reports them), never duplicated or dropped rows."""

import shutil

import h5py
import pytest

import obiwan_h5
from obiwan_h5.cli import main
from obiwan_h5.errors import FormatError
from obiwan_h5.read.validate import validate


def _broken(dr5_derived, tmp_path, change):
    path = str(tmp_path / "broken.h5")
    shutil.copy(dr5_derived, path)
    with h5py.File(path, "r+") as derived:
        change(derived)
    return path


def _set(name, row, value):
    def change(derived):
        derived[name][row] = value
    return change


CASES = [
    ("overlap", _set("bricks/offset", 2, 5), "overlap or leave a gap"),
    ("gap", _set("bricks/count", 1, 3), "overlap or leave a gap"),
    ("beyond the rows", _set("bricks/count", -1, 10**6), "the bricks hold"),
    ("negative count", _set("bricks/count", 0, -4), "is negative"),
    ("missing dataset", lambda derived: derived.__delitem__("bricks/count"), "bricks/count is missing"),
    ("short dataset", lambda derived: (derived.__delitem__("bricks/status"),
                                        derived.create_dataset("bricks/status", data=[1, 1])),
     "differ in length"),
]


@pytest.mark.parametrize("case, change, words", CASES, ids=[case[0] for case in CASES])
def test_a_broken_index_is_refused_by_readers_and_reported_by_validate(dr5_derived, tmp_path, capsys, case,
                                                                      change, words):
    path = _broken(dr5_derived, tmp_path, change)
    with pytest.raises(FormatError, match=words):
        obiwan_h5.open(path)
    assert main(["export-fits", path, "-o", str(tmp_path / "out.fits"), "--columns", "ra"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken brick index" in err[0]
    assert not (tmp_path / "out.fits").exists()
    assert validate(path) != []
