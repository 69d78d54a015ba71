"""The error convention on the reading side: an error is raised as the package's type where
it starts and reaches the caller as it is, through every command."""

import os

import pytest

from obiwan_h5.errors import ExpressionError, UnknownNameError, UnreadableFileError
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
