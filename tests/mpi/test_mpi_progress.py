"""Progress of `derive` under MPI: run by `make test-mpi` as ``mpiexec -n 2`` and ``-n 3``
(under the launcher's timeout there). Only rank 0 writes progress lines, and they move
brick by brick with the bricks of every rank, even when the whole job is one write round."""

import os
import re
import shutil
import tempfile

import pytest
from mpi4py import MPI

from obiwan_h5 import cli

# what rank 0 prints does not depend on how many ranks there are: 2 are enough
pytestmark = [pytest.mark.mpi, pytest.mark.any_ranks]

comm = MPI.COMM_WORLD
LINE = re.compile(r"^derive: (\d+)/(\d+) bricks \(\d+%\), (\d+) rows, \d+ rows/s, elapsed [^,]+, (ETA .+|finished)$")
NBRICKS = 7


@pytest.fixture(scope="module")
def production():
    path = comm.bcast(tempfile.mkdtemp(prefix="obiwan_h5_mpi_progress_") if comm.rank == 0 else None, root=0)
    root = os.path.join(path, "production")
    if comm.rank == 0:
        from obiwan_h5.sim.simulate import simulate

        simulate(root, n_bricks=NBRICKS, rsdirs=2, per_rsdir=60, schema="dr5", seed=5)
    comm.Barrier()
    yield root
    comm.Barrier()
    if comm.rank == 0:
        shutil.rmtree(path, ignore_errors=True)


def _derive_and_gather_stderr(production, capsys, *extra):
    output = os.path.join(os.path.dirname(production), f"progress-{comm.size}-{len(extra)}.h5")
    status = cli.main(["derive", "--data-dir", production, "-o", output, "--overwrite", *extra])
    return status, comm.gather(capsys.readouterr().err, root=0), output


@pytest.mark.parametrize("extra", [(), ("--max-memory", "0.001")], ids=["one-round", "a-round-per-brick"])
def test_progress_lines_come_from_rank_0_only_brick_by_brick(production, capsys, extra):
    status, errs, output = _derive_and_gather_stderr(production, capsys, "--progress-every", "0", *extra)
    problems = []
    if comm.rank == 0:
        import h5py

        with h5py.File(output, "r") as derived:
            total_rows = int(derived["bricks/count"][:].sum())
        lines = [[LINE.match(line) for line in err.splitlines() if line.startswith("derive: ")] for err in errs]
        if any(lines[1:]):
            problems.append(f"ranks other than 0 wrote progress: {[len(found) for found in lines]}")
        mine = lines[0]
        if not mine or None in mine:
            problems.append(f"rank 0's progress lines are missing or malformed: {errs[0]!r}")
        else:
            done = [int(match[1]) for match in mine]
            if done != sorted(done):
                problems.append(f"bricks done went backwards: {done}")
            if any(match[2] != str(NBRICKS) for match in mine):
                problems.append("a total is not the number of bricks")
            # rank 0 derives a share of the bricks only: lines before the end show the
            # other ranks' bricks too, and some line falls between the start and the end
            if not any(0 < value < NBRICKS for value in done):
                problems.append(f"no line before the end: {done}")
            final = [match for match in mine if match[4] == "finished"]
            if len(final) != 1 or mine[-1] is not final[0]:
                problems.append(f"not exactly one final line, last: {mine[-1][0]}")
            elif (final[0][1], final[0][3]) != (str(NBRICKS), str(total_rows)):
                problems.append(f"final line {final[0][0]!r}: expected {NBRICKS} bricks, {total_rows} rows")
    problems = comm.bcast(problems, root=0)
    assert status == 0 and not problems, problems


def test_quiet_derive_prints_no_progress_on_any_rank(production, capsys):
    status, errs, _ = _derive_and_gather_stderr(production, capsys, "--quiet")
    found = comm.bcast([err.count("derive: ") for err in errs] if comm.rank == 0 else None, root=0)
    assert status == 0 and found == [0] * comm.size


def test_rank_0_sees_the_other_ranks_bricks_before_the_round_ends():
    """The counts of the other ranks reach rank 0 as they go (non-blocking messages), not
    only at the round's collective."""
    import io
    import time

    from obiwan_h5.job.report import JobProgress
    from obiwan_h5.progress import ProgressStyle

    stream = io.StringIO()
    style = ProgressStyle(stream=stream, every=0) if comm.rank == 0 else False
    total = 1 + 2 * (comm.size - 1)
    shown = JobProgress(comm, style, total, 10 * total)
    if comm.rank != 0:
        shown.brick(10)
        shown.brick(10)
    comm.Barrier()  # the other ranks' messages are sent; no collective carries their counts yet
    seen = None
    if comm.rank == 0:
        shown.brick(10)
        deadline = time.monotonic() + 20
        while shown.reporter.done < total and time.monotonic() < deadline:
            time.sleep(0.01)
            shown.refresh()
        seen = (shown.reporter.done, shown.reporter.rows)
    shown.close()
    seen = comm.bcast(seen, root=0)
    assert seen == (total, 10 * total)
    lines = comm.bcast(stream.getvalue().splitlines() if comm.rank == 0 else None, root=0)
    assert lines[-1].startswith(f"derive: {total}/{total} bricks (100%), {10 * total} rows")
    assert lines[-1].endswith("finished")
    assert shown.reporter.mode == ("lines" if comm.rank == 0 else "silent")
