"""The derive job's partial file is the one every command writes (`obiwan_h5.outputs`): named
``.OUT.partial-XXXXXXXX``, held while the job writes it (so no other command's cleaner
takes it), cleaned by the next job once its writer is dead, taken by `resume` only when
nobody holds it; the partial files of the former naming are still resumed."""

import fcntl
import os
import shutil
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from obiwan_h5 import outputs
from obiwan_h5.fileformat import PENDING
from obiwan_h5.job import DeriveOptions, derive
from obiwan_h5.job.mpi import SerialComm
from obiwan_h5.job.output import find_partials, readback_problem
from obiwan_h5.job.writer import DerivedWriter

# holds a new partial of the output until its standard input closes: another command writing
HOLDER = textwrap.dedent("""
    import sys
    from obiwan_h5.outputs import Partial
    partial = Partial.create(sys.argv[1])
    print(partial.path, flush=True)
    sys.stdin.read()
""")


@pytest.fixture
def live_partial():
    """Start a process that holds a partial of the output given; yields its path."""
    holders = []

    def hold(output):
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(output)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        holders.append(holder)
        return holder.stdout.readline().strip()

    yield hold
    for holder in holders:
        holder.communicate("", timeout=120)


def _hdf5_holds_a_lock(path):
    """Whether someone (HDF5, in this process) holds an ``flock`` on `path`."""
    handle = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(handle)
    return False


def _hidden(directory):
    return sorted(name for name in os.listdir(directory) if name.startswith("."))


def _same_datasets(path, reference):
    with h5py.File(path, "r") as got, h5py.File(reference, "r") as want:
        assert got.attrs["complete"]
        for group in ("randoms", "summary", "bricks"):
            assert sorted(got[group]) == sorted(want[group]), group
            for name in want[group]:
                a, b = got[group][name][:], want[group][name][:]
                assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), f"{group}/{name}"


def test_a_derive_holds_its_partial_and_cleans_only_dead_ones(dr5_production, dr5_derived, tmp_path, monkeypatch,
                                                              live_partial):
    """Left by killed runs: a partial and a reserve of a reading command, a partial of an
    earlier version of derive; held by a running command: one more. The new job removes
    the dead ones only, and its own partial is held while it writes: what another
    command's cleaner (`outputs.stale_partials`) would remove is never it."""
    output = tmp_path / "out.h5"
    dead = [tmp_path / name for name in (".out.h5.partial-abcd1234", ".out.h5.reserve-abcd1234",
                                         ".out.h5.abcd1234.partial")]
    for path in dead:
        path.write_text("left by kill -9")
    live = live_partial(output)
    seen = []
    flush = DerivedWriter.flush

    def look_while_writing(writer):
        if not seen:
            seen.append((writer.path, outputs.stale_partials(str(output)), _hidden(tmp_path),
                         _hdf5_holds_a_lock(writer.path)))
        flush(writer)

    monkeypatch.setattr(DerivedWriter, "flush", look_while_writing)
    totals = derive(DeriveOptions(dr5_production, str(output), max_memory=0.001), SerialComm())
    assert totals["failed"] == 0
    path, stale, hidden, hdf5_lock = seen[0]
    assert not hdf5_lock  # HDF5's own lock is off on a held partial (it would meet ours on NFS)
    assert os.path.basename(path).startswith(".out.h5.partial-") and os.path.dirname(path) == str(tmp_path)
    assert stale == []  # the job's partial is held, the live one too, the dead ones are gone
    assert hidden == sorted([os.path.basename(path), os.path.basename(live)])
    assert _hidden(tmp_path) == [os.path.basename(live)]  # the job's partial became the output
    _same_datasets(output, dr5_derived)


def test_resume_takes_the_newest_partial_nobody_holds_also_of_the_former_naming(dr5_production, dr5_derived,
                                                                              tmp_path, live_partial):
    """A job of the previous version, timed out with one brick left, left
    ``.OUT.<random>.partial``; a newer partial is held by a running command. `resume`
    completes the former (deriving only the brick left) and leaves the live one alone."""
    output = tmp_path / "out.h5"
    legacy = tmp_path / ".out.h5.abcd1234.partial"
    shutil.copy(dr5_derived, legacy)
    with h5py.File(legacy, "r+") as interrupted:
        interrupted["bricks/status"][0] = PENDING
        interrupted.attrs["complete"] = False
    live = live_partial(output)  # newer than the legacy partial
    assert find_partials(str(output)) == [str(legacy)]
    totals = derive(DeriveOptions(dr5_production, str(output), resume=True), SerialComm())
    assert totals["bricks"] == 1  # resumed, not derived afresh
    _same_datasets(output, dr5_derived)
    assert _hidden(tmp_path) == [os.path.basename(live)]


def test_on_a_file_system_without_locks_resume_still_finds_partials(tmp_path, monkeypatch):
    """Where no lock can be tried, the reading commands never take a partial for stale, but
    a derive (which holds the job's lock, so no other derive writes one) still resumes it."""
    monkeypatch.setattr(outputs, "_lock", lambda fd, is_dir: None)
    output = str(tmp_path / "out.h5")
    partial = outputs.Partial.create(output)
    partial.release()
    assert outputs.stale_partials(output) == []
    assert find_partials(output) == [partial.path]


def test_a_partial_is_read_back_whatever_lock_its_holder_has(dr5_derived, tmp_path):
    """`resume` reads a partial back before taking it. Where ``flock`` is emulated by
    ``fcntl`` locks on the whole file (NFS), the lock of its holder (the resuming job
    itself) meets the one HDF5 takes when it opens a file: HDF5 said "unable to lock file",
    and a good partial was discarded. An ``flock`` held on it here stands for that lock."""
    path = tmp_path / ".out.h5.partial-abcd1234"
    shutil.copy(dr5_derived, path)
    handle = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert readback_problem(str(path)) is None
    finally:
        os.close(handle)
