"""Truth from PostgreSQL under MPI (issue 16): run by `make test-mpi` as ``-n 2`` and ``-n 3``.

Rank 0 starts a real server (tests/pgserver.py) on a Unix socket and loads the randoms;
every rank runs the derive. The job's role has a connection limit of K on the server, so
a rank beyond the first K that connected would be refused: the derive passing with
``db_connections=K`` < ranks shows that only K ranks connect and the others got their rows
over MPI, and its file must equal a single-process derive from the randoms file.
"""

import os
import shutil
import tempfile

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from obiwan_h5.errors import JobError
from obiwan_h5.job import DeriveOptions, derive
from obiwan_h5.job.mpi import SerialComm

pytestmark = [pytest.mark.mpi, pytest.mark.postgres]

comm = MPI.COMM_WORLD
TABLE = "obiwan.randoms_elg"


def _on_root(function):
    """`function()` on rank 0; its result, or its exception re-raised, on every rank."""
    result, error = None, None
    if comm.rank == 0:
        try:
            result = function()
        except BaseException as err:  # noqa: BLE001 — every rank must learn of it
            error = f"{type(err).__name__}: {err}"
    result, error = comm.bcast((result, error), root=0)
    if error:
        raise RuntimeError(f"rank 0: {error}")
    return result


@pytest.fixture(scope="module")
def setup():
    """(production, workdir, server) — the server object on rank 0 only, its conninfo everywhere."""
    from pgserver import load_randoms, make_server, why_not_available

    reason = comm.bcast(why_not_available() if comm.rank == 0 else None, root=0)
    if reason:
        pytest.skip(reason)
    workdir = comm.bcast(tempfile.mkdtemp(prefix="obiwan_h5_mpi_db_") if comm.rank == 0 else None, root=0)
    server = make_server() if comm.rank == 0 else None

    def start():
        from obiwan_h5.sim.simulate import simulate

        root = os.path.join(workdir, "production")
        simulate(root, n_bricks=5, rsdirs=2, per_rsdir=80, schema="dr5", seed=16)
        server.start()
        load_randoms(server.conninfo(), TABLE, os.path.join(root, "randoms.fits"))
        reference = os.path.join(workdir, "file.h5")
        derive(DeriveOptions(root, reference), SerialComm())
        return root, reference, server.sockdir

    try:
        yield (workdir, *_on_root(start))
    finally:
        comm.Barrier()
        if comm.rank == 0:
            server.stop()
            shutil.rmtree(workdir, ignore_errors=True)


def _limited_role(sockdir, name, limit):
    """A role allowed `limit` connections at once; its connection string."""
    def create():
        import psycopg

        with psycopg.connect(f"host={sockdir} dbname=postgres user=postgres", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone():
                conn.execute(f"CREATE ROLE {name} LOGIN CONNECTION LIMIT {limit}")
            conn.execute(f"GRANT USAGE ON SCHEMA obiwan TO {name}")
            conn.execute(f"GRANT SELECT ON {TABLE} TO {name}")

    _on_root(create)
    return f"host={sockdir} dbname=postgres user={name}"


def _differences(reference, candidate):
    problems = []
    with h5py.File(reference, "r") as ref, h5py.File(candidate, "r") as got:
        for group in ("randoms", "summary", "bricks"):
            if sorted(ref[group]) != sorted(got[group]):
                problems.append(f"{group}: datasets differ")
                continue
            for name in ref[group]:
                a, b = ref[group][name][:], got[group][name][:]
                if a.dtype != b.dtype or a.shape != b.shape:
                    problems.append(f"{group}/{name}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}")
                elif not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
                    problems.append(f"{group}/{name}: values differ")
    return problems


@pytest.mark.parametrize(("connections", "memory_mb"), [(1, 0.001), (2, 256)])
def test_fewer_connections_than_ranks_equals_the_file(setup, connections, memory_mb):
    """K = 1 with one brick per round (ranks run out of segments at different rounds and
    still join every exchange), and K = 2 in one round (fewer than 3 ranks, all of 2)."""
    workdir, production, reference, sockdir = setup
    conninfo = _limited_role(sockdir, f"limited{connections}", connections)
    output = os.path.join(workdir, f"db-{comm.size}-{connections}-{memory_mb}.h5")
    options = DeriveOptions(production, output, randoms_db=conninfo, randoms_table=TABLE,
                            db_connections=connections, max_memory=memory_mb, overwrite=True)
    totals = derive(options, comm)
    assert totals["failed"] == 0 and totals["done"] == 5
    assert _on_root(lambda: _differences(reference, output)) == []


def test_more_connections_than_the_server_allows_is_refused(setup):
    """The connection limit is real: every rank connecting where one is allowed fails the
    job cleanly, on every rank, before any output."""
    workdir, production, _, sockdir = setup
    conninfo = _limited_role(sockdir, "limited_one", 1)
    output = os.path.join(workdir, f"refused-{comm.size}.h5")
    options = DeriveOptions(production, output, randoms_db=conninfo, randoms_table=TABLE,
                            db_connections=comm.size)
    with pytest.raises(JobError, match="too many connections"):
        derive(options, comm)
    assert not os.path.exists(output)


@pytest.mark.any_ranks
@pytest.mark.timeout(120)
def test_a_stalled_server_fails_the_bricks_at_the_deadline_on_every_rank(setup, monkeypatch):
    """The server stops answering (SIGSTOP) once the file is created: every connected rank
    gives up after ``db_timeout``, its clients get the message over MPI, every brick fails
    and no rank waits for another; with the server continued, `resume` completes the file."""
    import contextlib
    import importlib
    import time

    from pgserver import frozen

    workdir, production, reference, sockdir = setup
    output = os.path.join(workdir, f"stalled-{comm.size}.h5")
    options = dict(randoms_db=f"host={sockdir} dbname=postgres user=postgres", randoms_table=TABLE,
                   max_memory=0.001)
    stack = contextlib.ExitStack()
    if comm.rank == 0:
        derive_module = importlib.import_module("obiwan_h5.job.derive")
        create = derive_module._open_output

        def create_then_freeze(*args, **kwargs):
            opened = create(*args, **kwargs)
            stack.enter_context(frozen(os.path.join(os.path.dirname(sockdir), "data")))
            return opened

        monkeypatch.setattr(derive_module, "_open_output", create_then_freeze)
    start = time.monotonic()
    try:
        totals = derive(DeriveOptions(production, output, db_timeout=2, **options), comm)
        elapsed = time.monotonic() - start
    finally:
        monkeypatch.undo()
        stack.close()
    assert totals["failed"] == 5
    assert comm.allreduce(elapsed, op=MPI.MAX) < 40
    totals = derive(DeriveOptions(production, output, resume=True, **options), comm)
    assert totals["failed"] == 0
    assert _on_root(lambda: _differences(reference, output)) == []
