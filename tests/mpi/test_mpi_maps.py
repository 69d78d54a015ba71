"""`obiwan-h5 maps` under MPI (`job.maps.run_maps`), run by `make test` under ``mpiexec -n 2``
and ``-n 3``: one process, 2 ranks and (under -n 3) 3 ranks write the same maps; refused
input and a failing rank end every rank with the same error, never a hang."""

import os
import shutil
import tempfile

import fitsio
import pytest
from mapfile import NSIDE, write_map_file
from mpi4py import MPI

from obiwan_h5.errors import InputError, JobError
from obiwan_h5.job.maps import run_maps
from obiwan_h5.job.mpi import SerialComm
from obiwan_h5.read import maps as read_maps

pytestmark = pytest.mark.mpi

comm = MPI.COMM_WORLD
# header cards that differ between two runs by their nature
VOLATILE = {"MAPDATE", "HISTORY", "CHECKSUM", "DATASUM"}


@pytest.fixture(scope="module")
def workdir():
    path = comm.bcast(tempfile.mkdtemp(prefix="obiwan_h5_mpi_maps_") if comm.rank == 0 else None, root=0)
    if comm.rank == 0:
        write_map_file(os.path.join(path, "constructed.h5"))
    comm.Barrier()
    yield path
    comm.Barrier()
    if comm.rank == 0:
        shutil.rmtree(path, ignore_errors=True)


def _share(check):
    """Run `check` on rank 0 and raise its failure on every rank (never a hang)."""
    failure = None
    if comm.rank == 0:
        try:
            check()
        except AssertionError as err:
            failure = str(err) or "assertion failed"
    failure = comm.bcast(failure, root=0)
    assert failure is None, failure


def _content(path):
    header = fitsio.read_header(path, ext="MAPS")
    cards = {record["name"]: record["value"] for record in header.records() if record["name"] not in VOLATILE}
    return fitsio.read(path, ext="MAPS").tobytes(), cards


@pytest.mark.timeout(120)
@pytest.mark.parametrize("nest, batch_rows", [(False, 4096), (True, 997)])
def test_one_two_and_three_ranks_write_the_same_maps(workdir, nest, batch_rows):
    source = os.path.join(workdir, "constructed.h5")
    tag = f"{'nest' if nest else 'ring'}-{batch_rows}"
    serial = os.path.join(workdir, f"serial-{tag}.fits")
    if comm.rank == 0:
        run_maps(source, serial, NSIDE, nest=nest, batch_rows=batch_rows, comm=SerialComm())
    outputs = {1: serial}
    # every rank count from 2 to the world's: a sub-communicator of the first `size` ranks
    for size in range(2, comm.size + 1):
        sub = comm.Split(0 if comm.rank < size else MPI.UNDEFINED, comm.rank)
        outputs[size] = os.path.join(workdir, f"ranks{size}-{tag}.fits")
        if sub != MPI.COMM_NULL:
            result = run_maps(source, outputs[size], NSIDE, nest=nest, batch_rows=batch_rows, comm=sub)
            assert result["pixels"] > 0 and result["bricks"] == 4
            sub.Free()
        comm.Barrier()

    def same():
        reference = _content(serial)
        for size, path in outputs.items():
            data, cards = _content(path)
            assert data == reference[0], f"{size} ranks: the map differs from one process's"
            assert cards == reference[1], f"{size} ranks: the header differs from one process's"

    _share(same)


@pytest.mark.any_ranks
@pytest.mark.timeout(60)
def test_a_refused_request_raises_the_same_error_on_every_rank(workdir):
    with pytest.raises(InputError, match="power of two"):
        run_maps(os.path.join(workdir, "constructed.h5"), os.path.join(workdir, "bad.fits"), 12, comm=comm)
    _share(lambda: None)


@pytest.mark.any_ranks
@pytest.mark.timeout(60)
def test_a_rank_that_fails_to_read_fails_every_rank_and_writes_nothing(workdir, monkeypatch):
    output = os.path.join(workdir, "failed.fits")
    if comm.rank == comm.size - 1:
        def broken(*args, **kwargs):
            raise OSError("unreadable batch")

        monkeypatch.setattr(read_maps, "pixel_numbers", broken)
    with pytest.raises(JobError, match=f"rank {comm.size - 1}: OSError: unreadable batch"):
        run_maps(os.path.join(workdir, "constructed.h5"), output, NSIDE, comm=comm)
    comm.Barrier()

    def nothing_left():
        assert not os.path.exists(output) and not os.path.exists(output + ".partial")

    _share(nothing_left)


@pytest.mark.any_ranks
@pytest.mark.timeout(60)
def test_rank_0_shows_the_progress_of_every_rank(workdir):
    import io

    from obiwan_h5.progress import ProgressStyle

    stream = io.StringIO()
    style = ProgressStyle(stream=stream, every=0, bar=False) if comm.rank == 0 else False
    run_maps(os.path.join(workdir, "constructed.h5"), os.path.join(workdir, "progress.h5"), NSIDE, batch_rows=2000,
             comm=comm, progress=style)

    def every_brick_shown():
        lines = stream.getvalue().splitlines()
        assert lines and lines[-1].startswith("maps: 4/4 bricks (100%), 27000 rows"), lines
        # bricks of the other ranks arrive before the end: more than one line moves
        assert len(lines) >= 3, lines

    _share(every_brick_shown)
