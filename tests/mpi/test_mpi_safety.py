"""Production safety under MPI (run by `make test-mpi` with 2 and 3 ranks): a refusal is
agreed by every rank, a bug in one brick fails that brick on whichever rank has it, and
no case leaves a rank waiting in a collective call (the launcher's timeout would fail
the run)."""

import os
import shutil
import tempfile

import fitsio
import h5py
import pytest
from mpi4py import MPI

from obiwan_h5.errors import JobError
from obiwan_h5.fileformat import DONE, FAILED
from obiwan_h5.job import DeriveOptions, derive
from obiwan_h5.production.layout import Production
from obiwan_h5.sim.simulate import to_dr3

pytestmark = [pytest.mark.mpi, pytest.mark.any_ranks]

comm = MPI.COMM_WORLD


@pytest.fixture(scope="module")
def workdir():
    path = comm.bcast(tempfile.mkdtemp(prefix="obiwan_h5_safety_") if comm.rank == 0 else None, root=0)
    yield path
    comm.Barrier()
    if comm.rank == 0:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def production(workdir):
    root = os.path.join(workdir, "production")
    if comm.rank == 0:
        from obiwan_h5.sim.simulate import simulate

        simulate(root, n_bricks=5, rsdirs=2, per_rsdir=60, schema="dr5", seed=5)
    comm.Barrier()
    return root


def _refused(options, words):
    with pytest.raises(JobError, match=words):
        derive(options, comm)
    comm.Barrier()


def test_bad_options_are_refused_by_every_rank(production, workdir):
    output = os.path.join(workdir, f"bad-{comm.size}.h5")
    _refused(DeriveOptions(production, output, match_radius=0), "`match_radius` 0.0")
    _refused(DeriveOptions(production, workdir, overwrite=True), "is a directory")
    _refused(DeriveOptions(production, os.path.join(production, "randoms.fits"), overwrite=True),
             "is an input of the job")
    assert not os.path.exists(output)


def test_a_bug_in_one_brick_fails_that_brick_on_any_rank(production, workdir, monkeypatch):
    from obiwan_h5.core import derivation

    bricks = open(os.path.join(production, "bricks.txt")).read().split()
    victim = bricks[-1]  # on the last rank
    real = derivation.derive_rows

    def buggy(pieces, *args, **kwargs):
        if any(piece.brickname == victim for piece in pieces):
            raise KeyError("a column nobody expected")
        return real(pieces, *args, **kwargs)

    monkeypatch.setattr("obiwan_h5.job.compute.derive_rows", buggy)
    output = os.path.join(workdir, f"bug-{comm.size}.h5")
    totals = derive(DeriveOptions(production, output, overwrite=True), comm)
    assert totals["failed"] == 1
    if comm.rank == 0:
        with h5py.File(output, "r") as derived:
            names = [name.decode() for name in derived["bricks/name"][:]]
            status = dict(zip(names, derived["bricks/status"][:]))
            message = dict(zip(names, derived["bricks/message"][:]))
        assert status[victim] == FAILED and message[victim].startswith(b"KeyError")
        assert all(status[name] == DONE for name in bricks if name != victim)
    comm.Barrier()


def test_mixed_tractor_schemas_are_refused_by_every_rank(production, workdir):
    root = os.path.join(workdir, f"mixed-{comm.size}")
    if comm.rank == 0:
        shutil.copytree(production, root)
        layout = Production(root)
        brick = open(os.path.join(root, "bricks.txt")).read().split()[-1]
        for rsdir in layout.rsdirs(brick):
            path = layout.tractor(brick, rsdir)
            fitsio.write(path, to_dr3(fitsio.read(path, lower=True)), clobber=True)
    comm.Barrier()
    _refused(DeriveOptions(root, os.path.join(workdir, f"mixed-{comm.size}.h5")), "mix the DR3 schema")
