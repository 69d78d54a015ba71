"""`derive`: the whole job on 1 process or N MPI ranks, in explicit phases (docs/derive.md).

1. agree   rank 0 reads the brick list and checks the options and output; all agree;
2. truth   rank 0 indexes the truth table once; every rank maps the index;
3. scan    each rank scans its contiguous range of bricks (the range it will derive);
4. plan    scans are gathered; every rank builds the same plan (offsets, columns);
5. create  the file is created collectively (or reopened to resume);
6. write   each rank derives its bricks in memory-bounded segments; every round is one
           collective write of rows and summaries, then statuses (done only once flushed).

Every collective step is entered by every rank, and every error that must stop the job is
agreed first (`mpi.agree`), so no rank is ever left waiting for one that gave up.
"""

import contextlib
import logging
import os

import numpy as np

from ..errors import InputError, OutputError
from ..fileformat import DONE, FAILED, INCOMPLETE, SUMMARY_COLUMNS, decode_attrs, summary_columns
from ..production.inputs import first_line, read_survey_bricks
from ..production.layout import Production
from .bytecopy import RowCopier
from .compute import BrickReader, compute_segment
from .faults import maybe_kill
from .mpi import agree, mpi_max
from .output import (
    ATTR_TRUTH_FINGERPRINT,
    changed_bricks,
    choose_target,
    new_partial,
    new_side_file,
    output_lock,
    remove_files,
    removed_on_failure,
    resume_problem,
    side_files,
)
from .plan import split_segments
from .planning import make_plan
from .report import Clock, JobProgress, file_attrs, final_report
from .truthshare import open_truth, truth_description
from .update import (
    BYTE_COPY_MIN_BYTES,
    OldFile,
    byte_copied_bricks,
    copy_sources,
    layout_problem,
    update_entry,
    update_problem,
)
from .writer import DerivedWriter, parallel_filter_problem

__all__ = ["derive"]

log = logging.getLogger("obiwan_h5.derive")

# what to do after an update failed: its partial file is removed (nothing to resume)
UPDATE_ADVICE = "once fixed, run the same update again (the file is as it was before it)"
# the shared truth index: ``.obiwan-h5-truth-<digest of OUT>-<random>-ids.npy`` and ``-rows.npy``
TRUTH_INDEX_KIND = "truth"
TRUTH_INDEX_PARTS = ("ids", "rows")


def derive(options, comm, command_line="", progress=False):
    """Run the derive job on every rank of `comm`.

    Parameters
    ----------
    options : job.options.DeriveOptions
    comm : communicator
        ``MPI.COMM_WORLD`` or `mpi.SerialComm`; every rank calls this function.
    command_line : str
        Recorded in the file.
    progress : bool or progress.ProgressStyle
        Show the bricks and rows derived (`obiwan_h5.progress`), on rank 0 only, whatever
        the other ranks pass; off by default.

    Returns
    -------
    dict
        Totals, the same on every rank: ``bricks``, ``done``, ``rows``, ``failed``,
        ``incomplete``, ``timings``, ``peak_rss_mb``, ``bytes_written``.

    Raises
    ------
    errors.JobError
        On every rank, when the job cannot run (bad options or inputs, output unusable).
    """
    clock = Clock()
    if comm.rank != 0:
        log.setLevel(logging.WARNING)
    bricknames = _agree_bricks(options, comm)
    production = Production(options.data_dir, options.objtype, options.dr_dir)
    with (output_lock(options, comm), _shared_truth(options, comm, bricknames) as (truth, bounds, fingerprint),
          contextlib.ExitStack() as failing):
        plan, scanned, ranges = make_plan(options, comm, production, bricknames, truth, bounds)
        maybe_kill("plan", comm.rank)
        clock.lap("plan")
        writer, todo, partial, sources = _open_output(options, comm, plan, command_line, fingerprint, failing)
        if writer is None:  # an update with nothing to do: the file is left as it is
            return _unchanged(options, comm, plan, clock)
        path = writer.path
        clock.lap("create")
        if options.update:  # nothing to resume: an update that fails is run again
            failing.enter_context(removed_on_failure(path))
        first, last = int(ranges[comm.rank]), int(ranges[comm.rank + 1])
        copies = {i: int(sources[i]) for i in range(first, last) if sources[i] >= 0}
        # done bricks of a resumed file and copied ones of an update are not derived
        scanned.keep_only(plan.bricknames[i] for i in range(first, last) if todo[i] and i not in copies)
        old = OldFile(options.output) if copies else None
        try:
            byte_copied, copier = _byte_copier(old, writer, plan, copies, first, last, options)
            reader = BrickReader(truth, bounds, options, scanned, copies, old, byte_copied)
            totals = _compute_and_write(writer, plan, todo, reader, ranges, comm, clock, progress, copier)
        finally:
            if old is not None:
                old.close()
        index = writer.read_index()
        totals["failed"] = int(np.sum(index["status"] == FAILED))
        totals["incomplete"] = int(np.sum(index["status"] == INCOMPLETE))
        timings, peak_rss = clock.gather(comm)
        totals.update(timings=timings, peak_rss_mb=peak_rss, bytes_written=plan.total_rows * plan.row_bytes)
        maybe_kill("close", comm.rank, 0, os.path.dirname(path))
        writer.set_attrs({"complete": True, "elapsed_s": timings["total"], "timings_s": timings,
                          "peak_rss_mb": peak_rss})
        writer.close()
        _finish(comm, partial)
        failing.pop_all()  # complete: nothing to remove
    if comm.rank == 0:
        final_report(options.output, index, timings["total"])
    return totals


# ----------------------------------------------------------------------------- phase 1

def _agree_bricks(options, comm):
    """Rank 0 validates the brick list and the output path; every rank gets the list."""
    bricknames, error = None, None
    if comm.rank == 0:
        try:
            options.check()
            error = parallel_filter_problem(options.compression, comm)
            if error is None:
                bricknames = options.brick_list()
        except InputError as err:
            error = str(err)
    agree(comm, error)
    return comm.bcast(bricknames, root=0)


# ----------------------------------------------------------------------------- phase 2

@contextlib.contextmanager
def _shared_truth(options, comm, bricknames):
    """The truth table on every rank, indexed once, the survey-bricks rows, and the truth
    table's fingerprint (its ``fingerprint``, by content with `verify_inputs`), recorded in
    the file and compared by `resume` and `update`.

    With several ranks, rank 0 reads the id column and writes the sorted index to two
    uniquely named files beside the output (``.obiwan-h5-truth-*.npy``, named after the
    output by `output.new_side_file`, created exclusively, never through a symlink); every rank maps them, so the ranks of a node share one copy
    in the page cache instead of each holding its own. Rank 0 removes the files as soon as
    every rank has mapped them (a mapping outlives its file name), so no later failure,
    abort or signal can leave them behind; files of an earlier job on the same output that
    was killed in between are removed first (the caller holds the output's lock, so no
    live job owns them). A PostgreSQL table (`randoms_db`) is indexed the same way; at most
    `db_connections` ranks connect and the others get their rows over MPI (`truthshare`).
    """
    truth, bounds, error, index_files, fingerprint = None, None, None, None, None
    if comm.rank == 0:
        for part in TRUTH_INDEX_PARTS:
            remove_files(side_files(options.output, TRUTH_INDEX_KIND, f"-{part}.npy"))
        try:
            truth = open_truth(options, comm)
            fingerprint = truth.fingerprint(options.verify_inputs)
            # only the job's bricks: the full survey-bricks table has 660,000 rows
            bounds = read_survey_bricks(options.survey_bricks, bricknames)
            if comm.size > 1:
                index_files = _write_truth_index(truth, options.output)
        except InputError as err:
            error = str(err)
        except OSError as err:
            error = f"{os.path.dirname(options.output)}: cannot write the shared truth index ({err.strerror})"
    try:
        agree(comm, error)
        index_files, bounds, fingerprint = comm.bcast((index_files, bounds, fingerprint), root=0)
        described = comm.bcast(truth_description(truth) if comm.rank == 0 else None, root=0)
        if comm.rank != 0:
            try:
                truth = open_truth(options, comm, index_files=index_files, described=described)
            except (InputError, OSError) as err:
                error = str(err)
        agree(comm, error)
        if comm.rank == 0:
            remove_files(index_files or ())  # every rank has mapped them
        yield truth, bounds, fingerprint
    finally:
        with contextlib.suppress(Exception):
            getattr(truth, "close", lambda: None)()
        if comm.rank == 0:
            remove_files(index_files or ())


def _write_truth_index(truth, output):
    """Two new side files of `output` (`output.new_side_file`) holding the index."""
    names, handles = [], []
    try:
        for part in TRUTH_INDEX_PARTS:
            name = new_side_file(output, TRUTH_INDEX_KIND, f"-{part}.npy")
            names.append(name)
            handles.append(open(name, "wb"))
        truth.save_index(*handles)
    except BaseException:
        remove_files(names)
        raise
    finally:
        for handle in handles:
            handle.close()
    return names


# ----------------------------------------------------------------------------- phases 3-4

# ----------------------------------------------------------------------------- phase 5

def _open_output(options, comm, plan, command_line, fingerprint, failing):
    """Create a new partial file collectively, or reopen the file to complete.

    Returns ``(writer, todo, partial, sources)``: `todo` marks the bricks to write;
    `partial` the `outputs.Partial` being written, on rank 0 (renamed to the output by
    `_finish`), None on the other ranks and when the output itself is completed; `sources`
    the brick of the old file each brick is copied from in an update (-1: derived). `writer`
    is None for an update with nothing to do. Rank 0 holds the partial until the job ends:
    `failing` releases it when the job fails, leaving the file to `resume`.
    """
    nothing = np.full(len(plan.bricknames), -1, dtype=np.int64)
    if options.update:
        return _open_update(options, comm, plan, command_line, fingerprint, failing)
    mode, partial = _on_rank_0(comm, options, lambda: choose_target(options, plan), failing)
    path = comm.bcast(partial.path if partial else options.output, root=0)
    if mode == "new":
        writer = _create(options, comm, plan, command_line, fingerprint, path)
        return writer, np.ones(len(plan.bricknames), dtype=bool), partial, nothing
    writer, error = None, None
    try:
        writer = DerivedWriter.open_existing(path, comm, **options.writer_options)
    except OSError as err:
        error = f"{path}: cannot reopen to resume ({err}); use `overwrite` to start again"
    agree(comm, error)
    index = writer.read_index()
    error = None
    if writer.file is not None:
        # every rank that has the file opens the same objects (parallel HDF5 wants it)
        attrs = dict(writer.file.attrs)
        columns = {name: (dset.dtype, dset.shape[1:]) for name, dset in sorted(writer.file["randoms"].items())}
        error = resume_problem(path, attrs, columns, index, plan, options, list(writer.file["summary"]), fingerprint)
    error = comm.bcast(error, root=0)
    if error:
        writer.close()
    agree(comm, error)
    changed = changed_bricks(index, plan)
    todo = (index["status"] != DONE) | changed
    if comm.rank == 0:
        log.info("resuming %s: %d of %d bricks already done, redoing %d (%d rows)", path,
                 int((~todo).sum()), len(todo), int(todo.sum()), int(plan.counts[todo].sum()))
        if changed.any():
            names = [plan.bricknames[i] for i in np.flatnonzero(changed)]
            log.warning("%d done brick(s) whose inputs changed since are derived again: %s%s", len(names),
                        ", ".join(names[:10]), " ..." if len(names) > 10 else "")
    return writer, todo, partial, nothing


def _on_rank_0(comm, options, choose, failing):
    """``choose()`` on rank 0, which returns ``(what every rank needs, partial or None)``,
    every rank agreeing on its failure. The partial (an `outputs.Partial`: its lock lives in
    rank 0's process, on a byte no rank writes) stays on rank 0, held until the job ends;
    `failing` releases it if the job fails, leaving the file."""
    choice, error = (None, None), None
    if comm.rank == 0:
        try:
            choice = choose()
        except (InputError, OutputError) as err:
            error = str(err)
        except OSError as err:
            error = f"{os.path.dirname(options.output)}: cannot create the output ({err.strerror})"
        if choice[1] is not None:
            failing.callback(choice[1].release)
    agree(comm, error)
    return comm.bcast(choice[0], root=0), choice[1]


def _create(options, comm, plan, command_line, fingerprint, path, extra_attrs=None, advice=None):
    """Create the new file at `path` collectively (`DerivedWriter.create`), its attributes
    made on rank 0; a creation that fails removes it (no layout: nothing to resume)."""
    attrs = None
    if comm.rank == 0:
        attrs = file_attrs(options, comm, command_line, plan)
        attrs[ATTR_TRUTH_FINGERPRINT] = fingerprint
        attrs.update(extra_attrs or {})
    attrs = comm.bcast(attrs, root=0)
    with removed_on_failure(path):
        return DerivedWriter.create(path, comm, plan, summary_columns(), attrs, chunk_bytes=options.chunk_kb * 1024,
                                    filters=options.filters, advice=advice, **options.writer_options)


def _open_update(options, comm, plan, command_line, fingerprint, failing):
    """The update of a complete file: a new partial file, each brick copied or derived."""
    choice, partial = _on_rank_0(comm, options, lambda: _plan_update(options, plan, fingerprint), failing)
    path = comm.bcast(partial.path if partial else None, root=0)
    sources, entry, history = choice
    if path is None:
        return None, None, None, sources
    writer = _create(options, comm, plan, command_line, fingerprint, path,
                     extra_attrs={"update_history": history + [entry]}, advice=UPDATE_ADVICE)
    return writer, np.ones(len(plan.bricknames), dtype=bool), partial, sources


def _plan_update(options, plan, fingerprint):
    """On rank 0: ``((sources, history entry, earlier history), partial or None)``."""
    import h5py

    output = options.output
    if not os.path.isfile(output):
        raise InputError(f"{output}: no file to update (derive it first, without `update`)")
    stats = os.stat(output)
    if not stats.st_mode & 0o222 or not os.access(output, os.W_OK):
        raise InputError(f"{output}: is read-only, and an update replaces it: make it writable first "
                         "(chmod u+w), or write the update elsewhere")
    try:
        with h5py.File(output, "r") as existing:
            attrs = decode_attrs(existing.attrs)
            attrs["inputs"] = existing.attrs.get("inputs", "{}")
            index = {name: dset[:] for name, dset in existing["bricks"].items()}
            columns = {name: (dset.dtype, dset.shape[1:]) for name, dset in existing["randoms"].items()}
            summary = list(existing["summary"])
            error = update_problem(output, attrs, options, summary, fingerprint)
            problem = None if error else layout_problem(existing, plan)
    except (OSError, KeyError, ValueError, RuntimeError) as err:
        raise InputError(f"{output}: not a readable obiwan_h5 file to update ({first_line(err)})") from None
    if problem:
        error = (f"{output}: {problem}: not laid out as derive writes it, so its rows cannot be copied; "
                 "derive afresh with `overwrite`")
    if error:
        raise InputError(error)
    sources = copy_sources(index, attrs.get("fingerprint_kind", "stat"), plan, options.fingerprint_kind)
    entry = update_entry(index, plan, sources)
    same_columns = columns == {c.name: (np.dtype(c.dtype), tuple(c.shape)) for c in plan.columns}
    unchanged = (same_columns and [name.decode() for name in index["name"]] == plan.bricknames
                 and bool(np.all(sources == np.arange(len(sources)))))
    if unchanged:
        log.info("%s: every brick is unchanged; nothing to update", output)
        return (sources, entry, []), None
    log.info("updating %s: %d brick(s) added, %d derived again, %d removed, %d copied", output,
             entry["added"], entry["rederived"], entry["removed"], entry["copied"])
    history = attrs.get("update_history", [])
    partial = new_partial(output, plan)
    # the updated file replaces the old one: it keeps its group, if allowed (and its
    # permissions: `outputs.Partial.finish`)
    with contextlib.suppress(OSError):
        os.chown(partial.path, -1, stats.st_gid)
    return (sources, entry, history if isinstance(history, list) else []), partial


def _unchanged(options, comm, plan, clock):
    timings, peak_rss = clock.gather(comm)
    return {"bricks": 0, "done": 0, "rows": 0, "failed": int(np.sum(plan.status == FAILED)),
            "incomplete": int(np.sum(plan.status == INCOMPLETE)), "timings": timings,
            "peak_rss_mb": peak_rss, "bytes_written": 0, "unchanged": True}


def _finish(comm, partial):
    """Rank 0 renames a completed partial file to the output, atomically (an output it
    replaces stays whole until this moment; the new file keeps its permissions)."""
    comm.Barrier()  # every rank has closed the file
    if partial is not None:
        partial.finish()
    comm.Barrier()


# ----------------------------------------------------------------------------- phase 6

def _compute_and_write(writer, plan, todo, reader, ranges, comm, clock, progress=False, copier=None):
    """Each rank derives its range (the one it scanned), written round by round; rank 0
    shows the progress of every rank, brick by brick (`report.JobProgress`). An update's
    bricks copied byte for byte (`copier`) have rounds of their own."""
    first, last = int(ranges[comm.rank]), int(ranges[comm.rank + 1])
    # half for the rows; the rest for the round's positions, gathered records and selections
    max_bytes = int(reader.options.max_memory * (1 << 20) / 2)
    segments = split_segments(todo, first, last, plan.counts, plan.row_bytes, max_bytes, reader.byte_copied)
    # an update's byte copies first: a rank copies while the others derive in the same
    # rounds (rounds are collective, so a round of copies alone would leave them waiting)
    segments.sort(key=lambda segment: segment[0] not in reader.byte_copied)
    rounds = comm.allreduce(len(segments), op=mpi_max())
    by_bytes = comm.allreduce(len(reader.byte_copied), op=mpi_max()) > 0
    randoms_names = sorted(column.name for column in plan.columns)
    summary_names = sorted(SUMMARY_COLUMNS)
    totals = {"bricks": int(todo.sum()), "done": 0, "rows": 0}
    shown = JobProgress(comm, progress, totals["bricks"], int(plan.counts[todo].sum()))
    for number in range(rounds):
        b0, b1 = segments[number] if number < len(segments) else (first, first)
        result = compute_segment(reader, plan, b0, b1, shown.brick)
        clock.lap("compute")
        # rows copied byte for byte go in while the other ranks compute: the collective
        # writes of the last round are over, and those of this round start after the copy
        error = None
        if result.byte_runs:
            maybe_kill("copy", comm.rank, number, os.path.dirname(writer.path))
            error = _copy_bytes(writer, reader.old, copier, result.byte_runs)
        clock.lap("write")
        # waiting for the slowest rank is load imbalance, not write time: measure it apart
        if by_bytes:
            _agree_output(comm, error)
        else:
            comm.Barrier()
        clock.lap("wait")
        start = int(plan.offsets[b0]) if b1 > b0 else 0
        writer.write_block("randoms", start, result.rows, randoms_names)
        writer.write_block("summary", b0, result.summary, summary_names)
        maybe_kill("write", comm.rank, number, os.path.dirname(writer.path))
        writer.flush()
        # a brick is marked done only once its rows are on disk
        writer.write_status(b0, result.status, result.messages, result.checksums, plan.fingerprints[b0:b1])
        maybe_kill("status", comm.rank, number, os.path.dirname(writer.path))
        writer.flush()
        clock.lap("write")
        done_rows = int(plan.counts[b0:b1][result.status == DONE].sum())
        done, nrows = comm.allreduce(np.array([b1 - b0, done_rows]))
        totals.update(done=totals["done"] + int(done), rows=totals["rows"] + int(nrows))
        shown.round_done()
        # free this round's rows before the next round allocates its own: one segment in memory
        del result
    shown.close()
    return totals


def _byte_copier(old, writer, plan, copies, first, last, options):
    """``(bricks, copier)``: the bricks of ``[first, last)`` whose rows an update copies
    byte for byte from the old file (`update.byte_copied_bricks`), and the
    `bytecopy.RowCopier` that locates them; none unless the ranks write in parallel and
    the same rows are the same bytes in both files."""
    if writer.mode != "parallel" or old is None:
        return set(), None  # serial HDF5 may hold raw data in its sieve buffer (`job.bytecopy`)
    names = [column.name for column in plan.columns]
    copier = RowCopier(old.randoms, {name: writer.dataset("randoms", name) for name in names}, names) \
        if old.same_columns(plan.columns) else None
    problem = "the old file's columns differ from the new file's" if copier is None else copier.problem()
    if problem is not None:
        log.debug("rows copied through HDF5: %s", problem)
        return set(), None
    min_bytes = min(BYTE_COPY_MIN_BYTES, options.max_memory * (1 << 20) / 8)
    return byte_copied_bricks(copies, first, last, plan.counts, plan.row_bytes, min_bytes), copier


def _copy_bytes(writer, old, copier, runs):
    """Copy rows of byte-copied bricks (`DerivedWriter.copy_bytes`): the error message, or
    None. Called between the write rounds: two-phase MPI-IO may read and rewrite the bytes
    between the ranges a collective write covers, which must not race with the copy."""
    try:
        writer.copy_bytes(old.path, copier.ranges(runs))
    except OutputError as err:
        return str(err)
    return None


def _agree_output(comm, error):
    """Collective: raise `OutputError` on every rank if any rank passes an error (so that
    no rank goes on to a collective write while another gave up)."""
    failed = [message for message in comm.allgather(error) if message]
    if failed:
        raise OutputError(failed[0])
