"""Failures under `mpiexec -n 2` that must end every rank promptly (never a hang), leave
the output name untouched, and leave a partial file that `--resume` completes to the data
of a clean run: a bug on one rank, SIGTERM, and a disk that fills up mid-job."""

import glob
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from obiwan_h5.job.faults import FILLER_NAME

MPIEXEC = shutil.which("mpiexec")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not on PATH (make setup installs MPICH)")]


def _derive(production, output, *extra, env=None, ranks=2):
    environment = {key: value for key, value in os.environ.items() if not key.startswith("OBIWAN_H5_")}
    environment.update(env or {})
    command = [sys.executable, "-m", "obiwan_h5.cli", "derive", "--data-dir", production, "-o", str(output),
               "--max-memory", "0.001", *extra]
    if ranks > 1:
        command = [MPIEXEC, "-n", str(ranks)] + command
    # a hang fails the test instead of stalling CI
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)


def _assert_same(path, reference):
    with h5py.File(path, "r") as got, h5py.File(reference, "r") as want:
        assert got.attrs["complete"]
        for group in ("randoms", "summary", "bricks"):
            for name in want[group]:
                if name in ("message",):
                    continue
                a, b = got[group][name][:], want[group][name][:]
                assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), f"{group}/{name}"


@pytest.mark.parametrize("fault", ["OBIWAN_H5_FAIL_AT=write:1@1", "OBIWAN_H5_TERM_AT=write:1@all"])
def test_an_error_on_one_rank_ends_every_rank_and_resume_completes(dr5_production, dr5_derived, tmp_path, fault):
    output = tmp_path / "out.h5"
    key, value = fault.split("=")
    broken = _derive(dr5_production, output, env={key: value})
    assert broken.returncode == (130 if key == "OBIWAN_H5_TERM_AT" else 1), broken.stderr[-2000:]
    # (the line saying why may be lost when mpiexec tears the job down: not asserted)
    assert not output.exists()
    assert len(glob.glob(str(tmp_path / ".out.h5.partial-*"))) == 1
    assert _truth_index_files(tmp_path) == []  # removed as soon as every rank mapped it
    resumed = _derive(dr5_production, output, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same(output, dr5_derived)
    assert not glob.glob(str(tmp_path / ".out.h5.partial-*"))
    assert _truth_index_files(tmp_path) == [] and not os.path.lexists(f"{output}.lock")


def _truth_index_files(directory):
    return glob.glob(str(directory / ".obiwan-h5-truth-*.npy"))


@pytest.fixture
def disk(tmpfs):
    return tmpfs(24 * 1024)


@pytest.mark.parametrize("ranks, point", [(1, "create"), (1, "write:0"), (1, "write:1"), (1, "close"),
                                          (2, "create"), (2, "write:1"), (2, "close")])
def test_a_disk_that_fills_is_a_clear_error_and_resume_completes(dr5_production, dr5_derived, disk, ranks, point):
    """The disk fills while the datasets are created, in the first write round (the first
    chunks of every column: HDF5 is left with metadata beyond the end of the file it
    records, a partial file that cannot be completed), in a later round, or before the
    file is closed. The job ends with one line and status 2 (or completes, when nothing
    more needed space), never a crash; the output name is untouched; `--resume` then
    completes a file equal to a clean run, starting afresh when the partial file cannot be
    read back (saying so)."""
    output = disk / "out.h5"
    # small chunks, so that later rounds need new space
    full = _derive(dr5_production, output, "--chunk-kb", "4", env={"OBIWAN_H5_FILL_AT": f"{point}@all"}, ranks=ranks)
    assert full.returncode in (0, 2), (full.returncode, full.stderr[-2000:])  # an error, not a crash
    assert "Traceback" not in full.stderr
    partials = glob.glob(str(disk / ".out.h5.partial-*"))
    if full.returncode == 2:
        # the last line says what happened (h5py may print HDF5's own complaints before it); under
        # mpiexec it can be lost when the job is torn down (seen once in ~10 runs): not asserted then
        last = [line for line in full.stderr.splitlines() if "obiwan-h5 derive" in line]
        if ranks == 1 or last:
            assert last and "cannot write the output (no space left on device)" in last[-1], full.stderr[-2000:]
        assert not output.exists()
        # a partial file is kept only when its datasets were all created
        assert len(partials) == (0 if point == "create" else 1), partials
    else:
        assert point == "close" and output.exists() and not partials
    assert _truth_index_files(disk) == []
    os.remove(disk / FILLER_NAME)  # space freed
    resumed = _derive(dr5_production, output, "--resume", "--chunk-kb", "4", ranks=ranks)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Traceback" not in resumed.stderr
    _assert_same(output, dr5_derived)
    assert not glob.glob(str(disk / ".out.h5.partial-*"))


@pytest.mark.parametrize("point", ["write:0", "copy:0@all"])
def test_a_disk_that_fills_during_an_update_leaves_the_old_file_and_no_partial(dr5_production, disk, tmp_path, point):
    """An update cannot be resumed: its partial file is removed, the message says to run
    the update again, and the old file is as it was; also when the disk fills as a rank
    copies unchanged rows byte for byte (`job.bytecopy`, in the first round of rank 0)."""
    bricks = open(os.path.join(dr5_production, "bricks.txt")).read().split()
    output = disk / "out.h5"
    assert _derive(dr5_production, output, "--bricks", ",".join(bricks[:5])).returncode == 0
    before = output.read_bytes()
    full = _derive(dr5_production, output, "--update", "--chunk-kb", "4", env={"OBIWAN_H5_FILL_AT": point})
    assert full.returncode == 2, full.stderr[-2000:]
    last = [line for line in full.stderr.splitlines() if "obiwan-h5 derive" in line][-1]
    assert "cannot write the output (no space left on device)" in last and "run the same update again" in last
    assert "--resume" not in last
    assert output.read_bytes() == before
    assert not glob.glob(str(disk / ".out.h5.partial-*"))
