"""The collective writer on its own, under mpiexec: ranks with nothing to write, and
blocks split into several calls, must neither hang nor corrupt the others' rows."""

import os
import tempfile

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from obiwan_h5.errors import JobError
from obiwan_h5.fileformat import Column
from obiwan_h5.job.plan import Plan
from obiwan_h5.job.writer import DerivedWriter

pytestmark = pytest.mark.mpi

comm = MPI.COMM_WORLD


def _plan(nrows):
    columns = [Column("value", np.dtype("f8")), Column("vector", np.dtype("i2"), (3,)),
               Column("label", np.dtype("S6")), Column("flag", np.dtype(bool))]
    return Plan(bricknames=["0001p000"], counts=np.array([nrows]), offsets=np.array([0]),
                status=np.zeros(1, np.int8), messages=[""], columns=columns)


def _rows(start, stop):
    index = np.arange(start, stop)
    # random values: chunks no filter can shrink, read back and rewritten when rows are added
    return {"value": np.random.default_rng(5).random(1000)[start:stop],
            "vector": np.stack([index, -index, index % 7], axis=1).astype("i2"),
            "label": np.array([f"r{i}".encode() for i in index], dtype="S6"), "flag": index % 2 == 0}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("layout", [
    dict(chunk_bytes=0),
    # small chunks that the ranks' shares cut through: chunks written by two ranks, and by
    # two calls of one rank, each of them read, decompressed and compressed again
    dict(chunk_bytes=2048, filters={"compression": "gzip", "compression_opts": 4, "shuffle": True}),
    dict(chunk_bytes=2048, filters={"compression": "gzip", "compression_opts": 1}),
], ids=["contiguous", "gzip-shuffle", "gzip"])
def test_only_the_last_rank_writes_and_calls_are_split(layout):
    path = comm.bcast(os.path.join(tempfile.mkdtemp(), "w.h5") if comm.rank == 0 else None)
    nrows = 1000
    plan = _plan(nrows)
    # tiny calls: the writing rank needs many pieces, idle ranks must join every one
    writer = DerivedWriter.create(path, comm, plan, [], {"format": "test"}, max_call_bytes=512, **layout)
    names = sorted(column.name for column in plan.columns)
    if comm.rank == comm.size - 1:
        writer.write_block("randoms", 0, _rows(0, nrows), names)
    else:
        writer.write_block("randoms", 0, {}, names)
    # then every rank writes its own share, the first one empty
    bounds = np.linspace(0, nrows, comm.size + 1).astype(int)
    lo, hi = (bounds[comm.rank], bounds[comm.rank + 1]) if comm.rank > 0 else (0, 0)
    expected = _rows(0, nrows)
    rewritten = {name: values + 1 if name == "value" else values for name, values in _rows(lo, hi).items()}
    writer.write_block("randoms", int(lo), rewritten if hi > lo else {}, names)
    writer.close()
    comm.Barrier()
    with h5py.File(path, "r") as derived:
        values = derived["randoms/value"][:]
        assert np.array_equal(values[bounds[1]:], expected["value"][bounds[1]:] + 1)
        assert np.array_equal(values[:bounds[1]], expected["value"][:bounds[1]])
        for name in ("vector", "label", "flag"):
            assert np.array_equal(derived["randoms"][name][:], expected[name])
        assert derived["randoms/value"].compression == layout.get("filters", {}).get("compression")


@pytest.mark.timeout(60)
@pytest.mark.any_ranks  # a refusal before any write: 2 ranks show it
def test_declining_filter_refused_on_every_rank():
    """LZF may decline a chunk, which the collective write path of parallel HDF5 loses
    track of: creation refuses it on every rank alike (one process may use it:
    tests/job/test_compression.py)."""
    path = comm.bcast(os.path.join(tempfile.mkdtemp(), "lzf.h5") if comm.rank == 0 else None)
    with pytest.raises(JobError, match="lzf cannot be written by several MPI ranks"):
        DerivedWriter.create(path, comm, _plan(10), [], {"format": "test"}, chunk_bytes=2048,
                             filters={"compression": "lzf", "shuffle": True})
    assert not os.path.exists(path)


@pytest.mark.timeout(60)  # with a lock on the whole partial, the ranks wait here forever
@pytest.mark.any_ranks
def test_a_partial_held_by_rank_0_is_written_by_every_rank():
    """Derive's partial file (`outputs.Partial`) is held by rank 0 while every rank writes
    it with MPI-IO. In atomic mode MPI-IO locks the byte range of every write (so does data
    sieving), which must never wait for the partial's own lock."""
    from obiwan_h5.outputs import Partial

    output = comm.bcast(os.path.join(tempfile.mkdtemp(), "held.h5") if comm.rank == 0 else None)
    partial = Partial.create(output) if comm.rank == 0 else None
    path = comm.bcast(partial.path if partial else None)
    nrows = 1000
    plan = _plan(nrows)
    writer = DerivedWriter.create(path, comm, plan, [], {"format": "test"}, chunk_bytes=2048)
    writer.file.atomic = True
    assert writer.file.atomic
    bounds = np.linspace(0, nrows, comm.size + 1).astype(int)
    lo, hi = bounds[comm.rank], bounds[comm.rank + 1]
    writer.write_block("randoms", int(lo), _rows(lo, hi), sorted(column.name for column in plan.columns))
    writer.flush()
    writer.close()
    comm.Barrier()
    if partial is not None:
        partial.finish()
    comm.Barrier()
    with h5py.File(output, "r") as derived:
        assert np.array_equal(derived["randoms/value"][:], _rows(0, nrows)["value"])
