"""The derive job under MPI: run by `make test` as ``mpiexec -n 2`` and ``-n 3``.

Every rank runs each test; rank 0 makes the production and a single-process reference
file, all ranks run the parallel job, rank 0 compares. Failing assertions on rank 0 are
shared with the other ranks so every rank reports the same outcome (never a hang).
"""

import os
import shutil
import tempfile

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from obiwan_h5.errors import JobError
from obiwan_h5.fileformat import DONE, FAILED
from obiwan_h5.job import DeriveOptions, derive
from obiwan_h5.job import writer as writer_module
from obiwan_h5.job.mpi import SerialComm
from obiwan_h5.production.layout import Production

pytestmark = pytest.mark.mpi

comm = MPI.COMM_WORLD


def _shared_tmpdir():
    path = tempfile.mkdtemp(prefix="obiwan_h5_mpi_") if comm.rank == 0 else None
    return comm.bcast(path, root=0)


@pytest.fixture(scope="module")
def workdir():
    path = _shared_tmpdir()
    yield path
    comm.Barrier()
    if comm.rank == 0:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def production(workdir):
    root = os.path.join(workdir, "production")
    if comm.rank == 0:
        from obiwan_h5.sim.simulate import simulate

        simulate(root, n_bricks=7, rsdirs=2, per_rsdir=90, schema="dr5", seed=3)
    comm.Barrier()
    return root


def _variant(production, workdir, name, change):
    """A copy of the production changed by ``change(layout, bricknames)`` on rank 0."""
    root = os.path.join(workdir, name)
    if comm.rank == 0:
        shutil.copytree(production, root)
        change(Production(root), open(os.path.join(root, "bricks.txt")).read().split())
    comm.Barrier()
    return root


def _reference(production, output, **options):
    """Single-process derive on rank 0 only (the truth every rank count must reproduce)."""
    if comm.rank == 0 and not os.path.exists(output):
        derive(DeriveOptions(production, output, **options), SerialComm())
    comm.Barrier()


def _compare_on_root(reference, candidate):
    problems = []
    if comm.rank == 0:
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
            if not got.attrs["complete"]:
                problems.append("file not marked complete")
    problems = comm.bcast(problems, root=0)
    assert not problems, problems


def test_identical_datasets_for_any_rank_count(production, workdir):
    reference = os.path.join(workdir, "serial.h5")
    _reference(production, reference)
    output = os.path.join(workdir, f"parallel-{comm.size}.h5")
    totals = derive(DeriveOptions(production, output, overwrite=True), comm)
    assert totals["failed"] == 0 and totals["done"] == 7
    _compare_on_root(reference, output)


@pytest.mark.any_ranks  # two ranks already run out of rounds at different times
def test_tiny_memory_budget_and_call_size_give_unequal_rounds(production, workdir):
    """One brick per write round and split calls: ranks run out of segments at different
    rounds, so idle ranks must join each collective write with an empty selection."""
    reference = os.path.join(workdir, "serial.h5")
    _reference(production, reference)
    output = os.path.join(workdir, f"tiny-{comm.size}.h5")
    options = DeriveOptions(production, output, overwrite=True, max_memory=0.001, max_call_bytes=4096, chunk_kb=0)
    derive(options, comm)
    _compare_on_root(reference, output)


def test_uneven_brick_sizes(production, workdir):
    """Bricks of 1 row, of one rsdir and of two: the balanced ranges are uneven in bricks."""
    def change(layout, names):
        import fitsio

        for name in names[:4]:
            shutil.rmtree(layout.obiwan_dir(name, "rs1"))
            shutil.rmtree(os.path.dirname(layout.tractor(name, "rs1")))
        for rsdir in ("rs0", "rs1"):
            ids = fitsio.read(layout.ids_added(names[5], rsdir))
            fitsio.write(layout.ids_added(names[5], rsdir), ids[:1], clobber=True)

    uneven = _variant(production, workdir, "uneven", change)
    reference = os.path.join(workdir, "uneven-serial.h5")
    _reference(uneven, reference)
    output = os.path.join(workdir, f"uneven-{comm.size}.h5")
    derive(DeriveOptions(uneven, output, overwrite=True, max_memory=0.05), comm)
    _compare_on_root(reference, output)
    if comm.rank == 0:
        with h5py.File(output, "r") as derived:
            counts = derived["bricks/count"][:]
        assert counts[5] == 2 and counts.max() > 1.8 * counts[:4].max()


def test_more_ranks_than_bricks(production, workdir):
    bricks = os.path.join(workdir, "one-brick.txt")
    if comm.rank == 0:
        names = open(os.path.join(production, "bricks.txt")).read().split()
        with open(bricks, "w") as handle:
            handle.write(names[3] + "\n")
    comm.Barrier()
    reference = os.path.join(workdir, "one-serial.h5")
    _reference(production, reference, bricks=bricks)
    output = os.path.join(workdir, f"one-{comm.size}.h5")
    totals = derive(DeriveOptions(production, output, bricks=bricks, overwrite=True), comm)
    assert totals["done"] == 1
    _compare_on_root(reference, output)


def test_rank_whose_bricks_all_fail(production, workdir):
    """The first bricks (the first rank's share) lose their Tractor catalogs."""
    def change(layout, names):
        for name in names[:3]:
            os.remove(layout.tractor(name, "rs1"))

    broken = _variant(production, workdir, "broken", change)
    reference = os.path.join(workdir, "broken-serial.h5")
    _reference(broken, reference)
    output = os.path.join(workdir, f"broken-{comm.size}.h5")
    totals = derive(DeriveOptions(broken, output, overwrite=True), comm)
    assert totals["failed"] == 3
    _compare_on_root(reference, output)
    if comm.rank == 0:
        with h5py.File(output, "r") as derived:
            assert list(derived["bricks/status"][:3]) == [FAILED] * 3
            assert all(derived["bricks/status"][3:] == DONE)


@pytest.mark.timeout(180)
# the second option exercises the same collective path: under 3 ranks (oversubscribed here,
# about a minute each) the first is enough
@pytest.mark.parametrize("compression", [
    dict(compression="gzip", compression_level=4),
    pytest.param(dict(compression="gzip", compression_level=1, shuffle=False), marks=pytest.mark.any_ranks)])
def test_compressed_parallel_write_equals_uncompressed(production, workdir, compression):
    """Filters in parallel HDF5 need collective writes (unequal rounds included, and chunks
    that several rounds and ranks add rows to): the data read back equals the uncompressed
    single-process file, and the filter is recorded."""
    reference = os.path.join(workdir, "serial.h5")
    _reference(production, reference)
    name = "-".join(f"{key}{value}" for key, value in sorted(compression.items()))
    output = os.path.join(workdir, f"compressed-{name}-{comm.size}.h5")
    options = DeriveOptions(production, output, overwrite=True, max_memory=0.05, chunk_kb=4, **compression)
    derive(options, comm)
    _compare_on_root(reference, output)
    recorded = None
    if comm.rank == 0:
        with h5py.File(output, "r") as derived:
            recorded = (derived["randoms/ra"].compression, derived["summary/brick_area"].compression,
                        derived.attrs["compression"])
    recorded = comm.bcast(recorded, root=0)
    assert recorded == ("gzip", "gzip", options.compression_text)


@pytest.mark.timeout(60)
@pytest.mark.any_ranks  # a refusal before any write: 2 ranks show it
def test_lzf_is_refused_on_every_rank(production, workdir):
    """Parallel HDF5 loses the record of a chunk LZF declined to compress (the file would be
    unreadable, and a rank adding rows to that chunk fails alone while the others wait):
    every rank refuses before anything is written."""
    output = os.path.join(workdir, f"lzf-{comm.size}.h5")
    with pytest.raises(JobError, match="lzf cannot be written by several MPI ranks"):
        derive(DeriveOptions(production, output, overwrite=True, compression="lzf"), comm)
    comm.Barrier()
    assert not os.path.exists(output)


def test_resume_after_crash_equals_uninterrupted_run(production, workdir):
    reference = os.path.join(workdir, "serial.h5")
    _reference(production, reference)
    output = os.path.join(workdir, f"resume-{comm.size}.h5")
    if comm.rank == 0:
        shutil.copy(reference, output)
        with h5py.File(output, "r+") as derived:
            # a crash after bricks 2 and 5 were created but before their rows were written
            for brick in (2, 5):
                derived["bricks/status"][brick] = 0
                first, count = derived["bricks/offset"][brick], derived["bricks/count"][brick]
                for name in derived["randoms"]:
                    dset = derived["randoms"][name]
                    dset[first:first + count] = np.zeros((count,) + dset.shape[1:], dset.dtype)
            derived.attrs["complete"] = False
    comm.Barrier()
    totals = derive(DeriveOptions(production, output, resume=True), comm)
    assert totals["bricks"] == 2 and totals["done"] == 2
    _compare_on_root(reference, output)


@pytest.mark.any_ranks
def test_funnel_mode_when_h5py_lacks_mpi(production, workdir, monkeypatch):
    """With a serial h5py, rows travel to rank 0, which writes them."""
    monkeypatch.setattr(writer_module, "h5py_has_mpi", lambda: False)
    reference = os.path.join(workdir, "serial.h5")
    _reference(production, reference)
    output = os.path.join(workdir, f"funnel-{comm.size}.h5")
    derive(DeriveOptions(production, output, overwrite=True, max_memory=0.001), comm)
    _compare_on_root(reference, output)


@pytest.mark.any_ranks
def test_truth_index_is_built_once_and_shared(production, workdir):
    """Rank 0 writes the sorted id index beside the output; every rank maps the same files,
    and rank 0 removes them as soon as every rank has mapped them (the mappings outlive the
    names), so that nothing can leave them behind."""
    from obiwan_h5.job.derive import _shared_truth
    from obiwan_h5.production.truth import TruthTable

    output = os.path.join(workdir, f"index-{comm.size}.h5")
    options = DeriveOptions(production, output, overwrite=True)
    alone = TruthTable(os.path.join(production, "randoms.fits"))
    bricknames = open(os.path.join(production, "bricks.txt")).read().split()
    with _shared_truth(options, comm, bricknames) as (truth, bounds, fingerprint):
        comm.Barrier()  # rank 0 removes the files once every rank has them: it may be later than this rank
        shared = [name for name in os.listdir(workdir) if name.startswith(".obiwan-h5-truth-")]
        mapped = comm.rank == 0 or isinstance(truth._sorted_ids, np.memmap)
        ids = np.asarray(alone._sorted_ids[::7])
        same_rows = np.array_equal(truth.rows_of(ids), alone.rows_of(ids))
        comm.Barrier()
    assert shared == [] and mapped and same_rows
    assert fingerprint == alone.fingerprint()
    assert set(bounds) >= set(bricknames)
    comm.Barrier()
    derive(options, comm)
    comm.Barrier()
    leftovers = [name for name in os.listdir(workdir) if name.startswith(".obiwan-h5-truth-")]
    assert leftovers == []


@pytest.mark.any_ranks
def test_bad_truth_table_stops_every_rank_with_the_reason(production, workdir):
    import fitsio

    from obiwan_h5.errors import JobError

    path = os.path.join(workdir, "dup-truth.fits")
    if comm.rank == 0:
        fitsio.write(path, np.array([(1, 2.0), (1, 3.0)], dtype=[("id", "i8"), ("g", "f8")]), clobber=True)
    comm.Barrier()
    output = os.path.join(workdir, f"dup-{comm.size}.h5")
    with pytest.raises(JobError, match="duplicate id 1"):
        derive(DeriveOptions(production, output, randoms=path, overwrite=True), comm)
    comm.Barrier()
    assert not os.path.exists(output)
    assert not [name for name in os.listdir(workdir) if name.startswith(".obiwan-h5-truth-")]


def test_update_equals_a_fresh_derive_for_any_rank_count(production, workdir):
    """Grow a file made from five bricks to all seven, on every rank: copied and derived
    rows land where a fresh derive of the seven bricks puts them."""
    bricks = open(os.path.join(production, "bricks.txt")).read().split()
    old_list = os.path.join(workdir, f"update-old-{comm.size}.txt")
    if comm.rank == 0:
        with open(old_list, "w") as handle:
            handle.write("\n".join(bricks[1:6]) + "\n")
    comm.Barrier()
    output = os.path.join(workdir, f"update-{comm.size}.h5")
    derive(DeriveOptions(production, output, bricks=old_list, overwrite=True), comm)
    totals = derive(DeriveOptions(production, output, update=True, max_memory=0.01), comm)
    assert totals["done"] == len(bricks)
    reference = os.path.join(workdir, "serial.h5")
    _reference(production, reference)
    _compare_on_root(reference, output)


# every layout on 2 ranks; on 3 (a rank between two others, slow on 2 cores) the chunks
# that do not line up between the files
@pytest.mark.parametrize("chunk_kb", [pytest.param(0, marks=pytest.mark.any_ranks), 1,
                                      pytest.param(4096, marks=pytest.mark.any_ranks)])
def test_an_update_copies_unchanged_rows_byte_for_byte(production, workdir, monkeypatch, chunk_kb):
    """Unchanged bricks' rows go file to file (`job.bytecopy`), in rounds of their own
    between rounds where ranks write collectively: with contiguous columns, with chunks
    that do not line up between the old file and the new, and with the default chunks.
    The file equals a fresh derive, and every copied row went as bytes."""
    bricks = open(os.path.join(production, "bricks.txt")).read().split()
    copied_bricks = [0, 1, 2, 4, 5]  # 3 (between two runs of copies) and 6 are added
    # rounds of a few bricks; runs of a brick or more are copied as bytes
    old_list = os.path.join(workdir, f"bytes-old-{comm.size}-{chunk_kb}.txt")
    if comm.rank == 0:
        with open(old_list, "w") as handle:
            handle.write("\n".join(bricks[i] for i in copied_bricks) + "\n")
    comm.Barrier()
    output = os.path.join(workdir, f"bytes-{comm.size}-{chunk_kb}.h5")
    if comm.rank == 0:  # the old file: how it was made does not matter
        derive(DeriveOptions(production, output, bricks=old_list, overwrite=True, chunk_kb=chunk_kb), SerialComm())
    comm.Barrier()
    copied, real = [], writer_module.copy_ranges

    def copy_ranges(source, target, ranges):
        copied.append(sum(length for _, _, length in ranges))
        return real(source, target, ranges)

    monkeypatch.setattr(writer_module, "copy_ranges", copy_ranges)
    totals = derive(DeriveOptions(production, output, update=True, max_memory=1, chunk_kb=chunk_kb), comm)
    monkeypatch.undo()
    assert totals["done"] == len(bricks)
    reference = os.path.join(workdir, "serial.h5")
    _reference(production, reference)
    _compare_on_root(reference, output)
    expected = None
    if comm.rank == 0:
        with h5py.File(output, "r") as derived:
            counts = derived["bricks/count"][:]
            width = sum(dset.dtype.itemsize * int(np.prod(dset.shape[1:])) for dset in derived["randoms"].values())
        expected = int(counts[copied_bricks].sum()) * width
    assert comm.allreduce(sum(copied)) == comm.bcast(expected, root=0)


@pytest.mark.any_ranks
def test_each_brick_is_listed_by_one_rank_once(production, workdir, monkeypatch):
    """The ranks list a strided share of the bricks to weigh them; each listing goes to the
    rank that scans the brick, which does not list it again."""
    listed = []
    real = Production.rsdirs

    def rsdirs(self, brickname):
        listed.append(brickname)
        return real(self, brickname)

    monkeypatch.setattr(Production, "rsdirs", rsdirs)
    derive(DeriveOptions(production, os.path.join(workdir, f"listed-{comm.size}.h5"), overwrite=True), comm)
    monkeypatch.undo()
    everyone = sorted(name for names in comm.allgather(listed) for name in names)
    assert everyone == sorted(open(os.path.join(production, "bricks.txt")).read().split())
