"""The error convention on the reading side: an error is raised as the package's type where
it starts and reaches the caller as it is, through every command."""

import os
import shutil

import h5py
import numpy as np
import pytest

import obiwan_h5
from obiwan_h5.cli import main
from obiwan_h5.errors import ExpressionError, FormatError, UnknownNameError, UnreadableFileError
from obiwan_h5.job.maps import run_maps
from obiwan_h5.read.export import export
from obiwan_h5.read.subset import make_subset
from obiwan_h5.read.view import make_view


def test_a_wrong_name_reaches_the_caller_as_the_readers_error(dr5_derived, tmp_path):
    """Through subset, view, export and maps (whose rank 0 refuses for every rank), an
    unknown column or brick is still the reader's `UnknownNameError`, a `KeyError` too."""
    output = str(tmp_path / "out")
    calls = [lambda: make_subset(dr5_derived, output + ".h5", columns="ra,psql_gg"),
             lambda: make_subset(dr5_derived, output + ".h5", bricks="9999p999"),
             lambda: make_view(dr5_derived, output + ".h5", "ra,nope_*"),
             lambda: export(dr5_derived, output + ".fits", where="psql_gg < 3"),
             lambda: export(dr5_derived, output + ".parquet", columns="psql_gg"),
             lambda: run_maps(dr5_derived, output + ".fits", 64, bricks="9999p999")]
    for call in calls:
        with pytest.raises(UnknownNameError) as caught:
            call()
        assert isinstance(caught.value, KeyError) and str(caught.value).startswith(("unknown", "no column")), caught
    assert os.listdir(tmp_path) == []


def test_a_filter_that_cannot_be_evaluated_is_the_filters_error(dr5_derived, tmp_path):
    for call in (lambda: export(dr5_derived, str(tmp_path / "x.fits"), where="tractor_type < 3"),
                 lambda: run_maps(dr5_derived, str(tmp_path / "x.fits"), 64, where="tractor_type < 3")):
        with pytest.raises(ExpressionError, match="`where` 'tractor_type < 3': cannot be evaluated"):
            call()
    assert os.listdir(tmp_path) == []


def test_an_unreadable_input_is_an_unreadable_file_error(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))  # an HDF5 signature, then nothing
    for call in (lambda: make_view(str(bad), str(tmp_path / "v.h5"), "ra"),
                 lambda: export(str(bad), str(tmp_path / "x.fits"))):
        with pytest.raises(UnreadableFileError, match="bad.h5: not a readable HDF5 file") as caught:
            call()
        assert isinstance(caught.value, OSError)


def test_an_index_of_another_type_is_a_format_error(dr5_derived, tmp_path, capsys):
    """Data numpy cannot take for the index (text offsets) is a broken file, said in one
    line naming it, not numpy's error."""
    path = tmp_path / "text-offsets.h5"
    shutil.copy(dr5_derived, path)
    with h5py.File(path, "r+") as raw:
        size = len(raw["bricks/offset"])
        del raw["bricks/offset"]
        raw["bricks/offset"] = np.array([b"x"] * size)
    with pytest.raises(FormatError, match="text-offsets.h5: broken obiwan_h5 layout"):
        obiwan_h5.open(str(path))
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "text-offsets.h5: broken obiwan_h5 layout" in err[0], err



def test_a_column_whose_linked_file_is_gone_is_a_format_error(dr5_derived, tmp_path):
    """The groups are there, one column's data file is not: the file is refused in one line
    when opened (h5py's KeyError once escaped from the reader)."""
    path = tmp_path / "one-link-gone.h5"
    shutil.copy(dr5_derived, path)
    with h5py.File(path, "r+") as raw:
        del raw["randoms/dec"]
        raw["randoms/dec"] = h5py.ExternalLink("gone.h5", "/randoms/dec")
    with pytest.raises(FormatError, match="one-link-gone.h5: incomplete obiwan_h5 layout or a linked data file is "
                                          "missing"):
        obiwan_h5.open(str(path))
