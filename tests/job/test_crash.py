"""Kill the MPI job at every kill point, then `--resume`: the file must equal an
uninterrupted run, and no brick may ever be marked done with rows that differ."""

import glob
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from obiwan_h5.job.faults import KILL_POINTS

MPIEXEC = shutil.which("mpiexec")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not on PATH (make setup installs MPICH)")]


def _derive(production, output, *extra, kill_at=None, ranks=2):
    env = dict(os.environ)
    env.pop("OBIWAN_H5_KILL_AT", None)
    if kill_at:
        env["OBIWAN_H5_KILL_AT"] = kill_at
    command = [MPIEXEC, "-n", str(ranks), sys.executable, "-m", "obiwan_h5.cli", "derive",
               "--data-dir", production, "-o", output, "--max-memory", "0.001", *extra]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def _datasets(path):
    with h5py.File(path, "r") as derived:
        return {f"{group}/{name}": derived[group][name][:]
                for group in ("randoms", "summary", "bricks") for name in derived[group]}


def _equal(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


@pytest.fixture(scope="module")
def reference(dr5_derived):
    return _datasets(dr5_derived)


@pytest.mark.parametrize("victim", ["0", "all"])
# a kill at `close` is one at the last round's `status` (every brick done): not worth its time
# here; `copy` is met only by an update (tests/job/test_safety_mpi.py)
@pytest.mark.parametrize("point", [point for point in KILL_POINTS if point not in ("close", "copy")])
def test_kill_then_resume_equals_uninterrupted_run(dr5_production, reference, tmp_path, point, victim):
    output = str(tmp_path / "derived.h5")
    # in the second write round, so that some bricks are already done when the job dies
    when = ":1" if point in ("write", "status") else ""
    killed = _derive(dr5_production, output, kill_at=f"{point}{when}@{victim}")
    assert killed.returncode != 0, "the job should have been killed"
    # the output name only ever holds a complete file: the work so far is in a partial file
    assert not os.path.exists(output)
    partials = glob.glob(str(tmp_path / ".derived.h5.partial-*"))
    if point == "create":
        # datasets half made: nothing to resume; a rank that sees its peer die removes the file,
        # one killed first leaves it (resume then discards it)
        assert len(partials) <= 1, partials
    else:
        assert len(partials) == (0 if point == "plan" else 1), partials
    if partials and point != "create":
        # after any crash: every brick marked done already has its final rows
        with h5py.File(partials[0], "r") as derived:
            status = derived["bricks/status"][:]
            offsets, counts = derived["bricks/offset"][:], derived["bricks/count"][:]
            rows = {name: derived["randoms"][name][:] for name in derived["randoms"]}
            assert not derived.attrs["complete"]
        if point in ("write", "status"):
            assert np.any(status == 1), "round 0 finished before the kill"
            assert not np.all(status == 1)
        for brick in np.flatnonzero(status == 1):
            lo, hi = offsets[brick], offsets[brick] + counts[brick]
            for name, values in rows.items():
                assert _equal(values[lo:hi], reference[f"randoms/{name}"][lo:hi]), (brick, name)
    # one case also resumes with another rank count (3 ranks on 2 cores is slow: only once)
    resumed = _derive(dr5_production, output, "--resume", ranks=3 if (point, victim) == ("status", "all") else 2)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    got = _datasets(output)
    assert sorted(got) == sorted(reference)
    for name, values in reference.items():
        assert _equal(got[name], values), name
    with h5py.File(output, "r") as derived:
        assert derived.attrs["complete"]
    assert not glob.glob(str(tmp_path / ".derived.h5.partial-*"))
