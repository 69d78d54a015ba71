"""The collective writer on its own, under mpiexec: ranks with nothing to write, and
blocks split into several calls, must neither hang nor corrupt the others' rows."""

import os
import tempfile

import h5py
import numpy as np
import pytest
from mpi4py import MPI

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
    return {"value": index * 0.5, "vector": np.stack([index, -index, index % 7], axis=1).astype("i2"),
            "label": np.array([f"r{i}".encode() for i in index], dtype="S6"), "flag": index % 2 == 0}


def test_only_the_last_rank_writes_and_calls_are_split():
    path = comm.bcast(os.path.join(tempfile.mkdtemp(), "w.h5") if comm.rank == 0 else None)
    nrows = 1000
    plan = _plan(nrows)
    # tiny calls: the writing rank needs many pieces, idle ranks must join every one
    writer = DerivedWriter.create(path, comm, plan, [], {"format": "test"}, chunk_bytes=0, max_call_bytes=512)
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
        share = slice(bounds[1], nrows) if comm.size > 1 else slice(0, 0)
        assert np.array_equal(values[share], expected["value"][share] + 1)
        first = slice(0, bounds[1]) if comm.size > 1 else slice(0, nrows)
        assert np.array_equal(values[first], expected["value"][first])
        for name in ("vector", "label", "flag"):
            assert np.array_equal(derived["randoms"][name][:], expected[name])
