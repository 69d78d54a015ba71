"""``derive --compression`` (issue 18 item 4): filtered columns hold the same data, the
choice is recorded, and resume/update refuse another compression."""

import json
import shutil

import h5py
import numpy as np
import pytest

from obiwan_h5.cli import main
from obiwan_h5.job import DeriveOptions, derive
from obiwan_h5.job.mpi import SerialComm


def _derive(data_dir, output, *extra):
    return main(["derive", "--data-dir", str(data_dir), "-o", str(output), *extra])


def _assert_same_data(reference, candidate):
    with h5py.File(reference, "r") as ref, h5py.File(candidate, "r") as got:
        for group in ("randoms", "summary", "bricks"):
            assert sorted(ref[group]) == sorted(got[group])
            for name in ref[group]:
                a, b = ref[group][name][:], got[group][name][:]
                assert a.dtype == b.dtype and a.shape == b.shape, name
                assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name


@pytest.mark.parametrize("options, text", [
    (dict(compression="gzip"), "gzip-1+shuffle"),
    (dict(compression="gzip", compression_level=9, shuffle=False), "gzip-9"),
    (dict(compression="lzf"), "lzf+shuffle"),
])
def test_compressed_file_holds_the_same_data(dr5_production, dr5_derived, tmp_path, options, text):
    output = str(tmp_path / "compressed.h5")
    totals = derive(DeriveOptions(dr5_production, output, chunk_kb=16, **options), SerialComm())
    assert totals["failed"] == 0
    _assert_same_data(dr5_derived, output)
    with h5py.File(output, "r") as derived:
        assert derived.attrs["compression"] == text
        assert json.loads(derived.attrs["inputs"])["compression"] == text
        for group in ("randoms", "summary"):
            for dset in derived[group].values():
                if dset.size:
                    assert dset.compression == options["compression"], dset.name
                    assert dset.shuffle == options.get("shuffle", True)
        if options["compression"] == "gzip":
            assert derived["randoms/ra"].compression_opts == options.get("compression_level", 1)
    with h5py.File(dr5_derived, "r") as plain:
        assert plain.attrs["compression"] == "none"
        assert plain["randoms/ra"].compression is None


def test_compression_needs_chunks(dr5_production, tmp_path, capsys):
    assert _derive(dr5_production, tmp_path / "out.h5", "--compression", "gzip", "--chunk-kb", "0") == 2
    err = capsys.readouterr().err
    assert "--compression gzip needs a chunked layout" in err and "--chunk-kb" in err
    assert not (tmp_path / "out.h5").exists()


def test_compression_level_only_with_gzip(dr5_production, tmp_path, capsys):
    assert _derive(dr5_production, tmp_path / "out.h5", "--compression", "lzf", "--compression-level", "3") == 2
    assert "--compression-level applies to gzip only" in capsys.readouterr().err
    assert _derive(dr5_production, tmp_path / "out.h5", "--compression", "gzip", "--compression-level", "12") == 2
    assert "--compression-level 12: must be 1 to 9" in capsys.readouterr().err


def test_resume_and_update_keep_the_compression(dr5_production, tmp_path, capsys):
    output = tmp_path / "out.h5"
    assert _derive(dr5_production, output, "--compression", "gzip") == 0
    with h5py.File(output, "r+") as derived:
        derived["bricks/status"][1] = 0
        derived.attrs["complete"] = False
    assert _derive(dr5_production, output, "--resume") == 2
    err = capsys.readouterr().err
    assert "written with compression gzip-1+shuffle, now none" in err and "--compression" in err
    assert _derive(dr5_production, output, "--resume", "--compression", "lzf") == 2
    assert "now lzf+shuffle" in capsys.readouterr().err
    assert _derive(dr5_production, output, "--resume", "--compression", "gzip") == 0
    with h5py.File(output, "r") as derived:
        assert derived.attrs["complete"] and derived["randoms/ra"].compression == "gzip"
    assert _derive(dr5_production, output, "--update") == 2
    assert "written with compression gzip-1+shuffle, now none" in capsys.readouterr().err
    assert _derive(dr5_production, output, "--update", "--compression", "gzip") == 0


def test_file_from_before_the_option_resumes_uncompressed(dr5_derived, dr5_production, tmp_path):
    """Files written before `compression` was recorded were uncompressed."""
    output = tmp_path / "old.h5"
    shutil.copy(dr5_derived, output)
    with h5py.File(output, "r+") as derived:
        inputs = json.loads(derived.attrs["inputs"])
        del inputs["compression"]
        derived.attrs["inputs"] = json.dumps(inputs)
        derived["bricks/status"][0] = 0
        derived.attrs["complete"] = False
    assert _derive(dr5_production, output, "--resume") == 0
