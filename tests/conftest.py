"""Shared fixtures: tiny productions made with the simulator, and the real samples."""

import os
import shutil

import pytest

from obiwan_h5.job import DeriveOptions, derive
from obiwan_h5.job.mpi import SerialComm

REAL_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "real")


@pytest.fixture(scope="session")
def real_dir():
    """The real Legacy Survey samples beside the checkout (skipped, saying why, when absent)."""
    path = os.path.abspath(os.environ.get("OBIWAN_H5_REAL_DATA", REAL_DIR))
    if not os.path.isdir(path):
        pytest.skip(f"real samples not found at {path} (set OBIWAN_H5_REAL_DATA)")
    return path


@pytest.fixture(scope="session")
def dr5_production(tmp_path_factory):
    """A 6-brick, 2-rsdir DR5-schema production (read-only for tests: copy before changing)."""
    from obiwan_h5.sim.simulate import simulate

    root = tmp_path_factory.mktemp("dr5") / "production"
    simulate(str(root), n_bricks=6, rsdirs=2, per_rsdir=150, schema="dr5", seed=7)
    return str(root)


@pytest.fixture(scope="session")
def dr3_production(tmp_path_factory):
    from obiwan_h5.sim.simulate import simulate

    root = tmp_path_factory.mktemp("dr3") / "production"
    simulate(str(root), n_bricks=3, rsdirs=2, per_rsdir=120, schema="dr3", seed=11)
    return str(root)


@pytest.fixture(scope="session")
def dr5_derived(dr5_production, tmp_path_factory):
    """The derived file of `dr5_production` (single process)."""
    output = str(tmp_path_factory.mktemp("derived") / "derived.h5")
    totals = derive(DeriveOptions(dr5_production, output), SerialComm())
    assert totals["failed"] == 0
    return output


@pytest.fixture
def production_copy(dr5_production, tmp_path):
    """A private copy of the DR5 production that a test may damage."""
    copy = tmp_path / "production"
    shutil.copytree(dr5_production, copy)
    return str(copy)


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server on a Unix socket in a temporary directory (tests/pgserver.py),
    stopped at the end of the session; the tests are skipped, saying why, where it cannot run."""
    from pgserver import make_server, why_not_available

    reason = why_not_available()
    if reason:
        pytest.skip(reason)
    server = make_server().start()
    yield server
    server.stop()


MPI_TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mpi")


def pytest_ignore_collect(collection_path, config):
    """Leave tests/mpi out unless it is named on the command line: those tests need MPI
    ranks (`make test-mpi` runs them under mpiexec), so a plain ``pytest`` or ``pytest
    tests`` does not collect them."""
    if str(collection_path) != MPI_TESTS:
        return None
    # the paths given, or testpaths (["tests"], used only when run from the root directory)
    for arg in config.args:
        path = os.path.abspath(os.path.join(config.invocation_params.dir, arg.split("::")[0]))
        if path == MPI_TESTS or path.startswith(MPI_TESTS + os.sep):
            return None
    return True


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(kib)``: a file system of our own of `kib` KiB (a full disk made to order;
    mounting needs root, as in CI), unmounted at the end of the test (lazily if a process
    lingers)."""
    mounts = []

    def mount(kib):
        where = tmp_path / f"tmpfs{len(mounts)}"
        where.mkdir()
        if os.geteuid() != 0 or os.system(f"mount -t tmpfs -o size={int(kib)}k tmpfs {where} 2>/dev/null") != 0:
            pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
        mounts.append(where)
        return where

    yield mount
    for where in mounts:
        os.system(f"umount {where} 2>/dev/null || umount -l {where}")
