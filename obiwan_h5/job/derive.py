"""`derive`: the whole job on 1 process or N MPI ranks, in explicit phases (SPEC §6).

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
import json
import logging
import os
import tempfile
import time
from datetime import datetime, timezone

import numpy as np

from .. import __version__
from ..core import selection
from ..errors import InputError
from ..fileformat import (
    DONE,
    FAILED,
    FORMAT_NAME,
    FORMAT_VERSION,
    INCOMPLETE,
    OBIWAN_BITS,
    PENDING,
    STATUS_NAMES,
    SUMMARY_COLUMNS,
    summary_columns,
)
from ..production.inputs import read_survey_bricks
from ..production.layout import Production, read_brick_list
from ..production.truth import TruthTable
from .compute import BrickReader, compute_segment
from .faults import maybe_kill
from .mpi import agree, mpi_max
from .plan import assign_ranges, build_plan, detach_schemas, gather_scans, split_segments
from .scan import scan_brick
from .writer import DerivedWriter

__all__ = ["derive"]

log = logging.getLogger("obiwan_h5.derive")


def derive(options, comm, command_line=""):
    """Run the derive job on every rank of `comm`.

    Parameters
    ----------
    options : job.options.DeriveOptions
    comm : communicator
        ``MPI.COMM_WORLD`` or `mpi.SerialComm`; every rank calls this function.
    command_line : str
        Recorded in the file.

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
    clock = _Clock()
    if comm.rank != 0:
        log.setLevel(logging.WARNING)
    bricknames = _agree_bricks(options, comm)
    production = Production(options.data_dir, options.objtype, options.dr_dir)
    with _shared_truth(options, comm) as (truth, bounds):
        ranges = assign_ranges(_brick_weights(options, comm, bricknames), comm.size)
        plan, scanned = _make_plan(options, comm, production, bricknames, truth, bounds, ranges)
        maybe_kill("plan", comm.rank)
        clock.lap("plan")
        writer, todo = _open_output(options, comm, plan, command_line)
        clock.lap("create")
        for brickname in [name for name in scanned if not todo[plan.bricknames.index(name)]]:
            del scanned[brickname]  # done bricks of a resumed file are not read again
        reader = BrickReader(production, truth, bounds, options, scanned)
        totals = _compute_and_write(writer, plan, todo, reader, ranges, comm, clock)
        index = writer.read_index()
        totals["failed"] = int(np.sum(index["status"] == FAILED))
        totals["incomplete"] = int(np.sum(index["status"] == INCOMPLETE))
        timings, peak_rss = clock.gather(comm)
        totals.update(timings=timings, peak_rss_mb=peak_rss, bytes_written=plan.total_rows * plan.row_bytes)
        writer.set_attrs({"complete": True, "elapsed_s": timings["total"], "timings_s": timings,
                          "peak_rss_mb": peak_rss})
        writer.close()
    if comm.rank == 0:
        _final_report(options.output, index, timings["total"])
    return totals


# ----------------------------------------------------------------------------- phase 1

def _agree_bricks(options, comm):
    """Rank 0 validates the brick list and the output path; every rank gets the list."""
    bricknames, error = None, None
    if comm.rank == 0:
        try:
            bricknames = read_brick_list(options.bricks)
            error = options.check_output()
        except InputError as err:
            error = str(err)
    agree(comm, error)
    return comm.bcast(bricknames, root=0)


def _brick_weights(options, comm, bricknames):
    """Expected cost of each brick, known before any scan: rows still to derive when
    resuming (from the file's own index), else one unit per brick."""
    weights = None
    if comm.rank == 0:
        weights = np.ones(len(bricknames))
        if options.resume and os.path.isfile(options.output):
            # a file that cannot be resumed is refused, with its reason, once it is reopened
            with contextlib.suppress(Exception):
                import h5py

                with h5py.File(options.output, "r") as existing:
                    names = [name.decode() for name in existing["bricks/name"][:]]
                    if names == list(bricknames):
                        done = existing["bricks/status"][:] == DONE
                        weights = np.where(done, 0.0, existing["bricks/count"][:] + 1.0)
    return comm.bcast(weights, root=0)


# ----------------------------------------------------------------------------- phase 2

@contextlib.contextmanager
def _shared_truth(options, comm):
    """The truth table on every rank, indexed once, and the survey-bricks rows.

    With several ranks, rank 0 reads the id column and writes the sorted index to two
    uniquely named files beside the output (created exclusively, never through a symlink);
    every rank maps them, so the ranks of a node share one copy in the page cache instead
    of each holding its own. The files are removed when the block ends, however it ends.
    """
    truth, bounds, error, index_files = None, None, None, None
    if comm.rank == 0:
        try:
            truth = TruthTable(options.randoms)
            bounds = read_survey_bricks(options.survey_bricks)
            if comm.size > 1:
                index_files = _write_truth_index(truth, os.path.dirname(options.output))
        except InputError as err:
            error = str(err)
        except OSError as err:
            error = f"{os.path.dirname(options.output)}: cannot write the shared truth index ({err.strerror})"
    try:
        agree(comm, error)
        index_files = comm.bcast(index_files, root=0)
        bounds = comm.bcast(bounds, root=0)
        if comm.rank != 0:
            try:
                truth = TruthTable(options.randoms, index_files=index_files)
            except (InputError, OSError) as err:
                error = str(err)
        agree(comm, error)
        yield truth, bounds
    finally:
        if comm.rank == 0:
            for name in index_files or ():
                with contextlib.suppress(OSError):
                    os.remove(name)


def _write_truth_index(truth, directory):
    """Two new files (``mkstemp``: exclusive, unique, no symlink followed) holding the index."""
    names, handles = [], []
    try:
        for part in ("ids", "rows"):
            handle, name = tempfile.mkstemp(prefix=".obiwan-h5-truth-", suffix=f"-{part}.npy", dir=directory or ".")
            names.append(name)
            handles.append(os.fdopen(handle, "wb"))
        truth.save_index(*handles)
    except BaseException:
        for name in names:
            with contextlib.suppress(OSError):
                os.remove(name)
        raise
    finally:
        for handle in handles:
            handle.close()
    return names


# ----------------------------------------------------------------------------- phases 3-4

def _make_plan(options, comm, production, bricknames, truth, bounds, ranges):
    """Each rank scans the bricks it will derive; the plan is built the same everywhere.

    Returns the plan and this rank's scanned inputs (`scan.BrickInputs` by brick name).
    """
    first, last = int(ranges[comm.rank]), int(ranges[comm.rank + 1])
    scans, scanned = [], {}
    for brickname in bricknames[first:last]:
        scan, inputs = scan_brick(production, brickname, truth, bounds.get(brickname),
                                  options.expect_rsdirs, options.keep_all_apflux)
        scans.append(scan)
        if inputs is not None:
            scanned[brickname] = inputs
    scans, distinct = gather_scans(comm.allgather(detach_schemas(scans)))
    plan = build_plan(scans, distinct)
    for scan in scans:
        if scan.status != PENDING:
            scanned.pop(scan.brickname, None)  # failed when the schemas were joined
    if comm.rank == 0:
        for scan in scans:
            if scan.status in (FAILED, INCOMPLETE):
                log.warning("brick %s %s: %s", scan.brickname, STATUS_NAMES[scan.status], scan.message)
        log.info("plan: %d bricks, %d rows, %d columns (%.1f KiB/row) on %d rank(s)",
                 len(bricknames), plan.total_rows, len(plan.columns), plan.row_bytes / 1024, comm.size)
    return plan, scanned


# ----------------------------------------------------------------------------- phase 5

def _open_output(options, comm, plan, command_line):
    """Create the file collectively, or reopen it to resume; returns (writer, todo)."""
    writer_options = dict(mpi_info=options.mpi_info, alignment=options.alignment,
                          max_call_bytes=options.max_call_bytes)
    # the final name only ever holds a fully created file (see DerivedWriter.create), so a
    # job killed before or during creation resumes by starting afresh
    resuming = options.resume and comm.bcast(os.path.exists(options.output) if comm.rank == 0 else None)
    if options.resume and not resuming and comm.rank == 0:
        log.info("%s does not exist yet: nothing to resume, creating it", options.output)
    if not resuming:
        attrs = _file_attrs(options, comm, command_line, plan) if comm.rank == 0 else None
        attrs = comm.bcast(attrs, root=0)
        writer = DerivedWriter.create(options.output, comm, plan, summary_columns(), attrs,
                                      chunk_bytes=options.chunk_kb * 1024, **writer_options)
        return writer, np.ones(len(plan.bricknames), dtype=bool)
    writer, error = None, None
    try:
        writer = DerivedWriter.open_existing(options.output, comm, **writer_options)
    except OSError as err:
        error = f"{options.output}: cannot reopen to resume ({err}); use `overwrite` to start again"
    agree(comm, error)
    index = writer.read_index()
    error = _resume_mismatch(writer, index, plan, options, comm)
    if error:
        writer.close()
    agree(comm, error)
    todo = index["status"] != DONE
    if comm.rank == 0:
        log.info("resuming %s: %d of %d bricks already done, redoing %d (%d rows)", options.output,
                 int((~todo).sum()), len(todo), int(todo.sum()), int(plan.counts[todo].sum()))
    return writer, todo


# ----------------------------------------------------------------------------- phase 6

def _compute_and_write(writer, plan, todo, reader, ranges, comm, clock):
    """Each rank derives its range (the one it scanned), written round by round."""
    first, last = int(ranges[comm.rank]), int(ranges[comm.rank + 1])
    max_bytes = int(reader.options.max_memory_mb * (1 << 20) / 2)  # rows, plus a brick's pieces and their sources
    segments = split_segments(todo, first, last, plan.counts, plan.row_bytes, max_bytes)
    rounds = comm.allreduce(len(segments), op=mpi_max())
    randoms_names = sorted(column.name for column in plan.columns)
    summary_names = sorted(SUMMARY_COLUMNS)
    totals = {"bricks": int(todo.sum()), "done": 0, "rows": 0}
    for number in range(rounds):
        b0, b1 = segments[number] if number < len(segments) else (first, first)
        rows, summary_rows, status, messages, checksums = compute_segment(reader, plan, b0, b1)
        clock.lap("compute")
        # waiting for the slowest rank is load imbalance, not write time: measure it apart
        comm.Barrier()
        clock.lap("wait")
        start = int(plan.offsets[b0]) if b1 > b0 else 0
        writer.write_block("randoms", start, rows, randoms_names)
        writer.write_block("summary", b0, summary_rows, summary_names)
        maybe_kill("write", comm.rank, number)
        writer.flush()
        # a brick is marked done only once its rows are on disk
        writer.write_status(b0, status, messages, checksums)
        maybe_kill("status", comm.rank, number)
        writer.flush()
        clock.lap("write")
        done_rows = int(sum(plan.counts[b0:b1][status == DONE]))
        done, nrows = comm.allreduce(np.array([b1 - b0, done_rows]))
        totals.update(done=totals["done"] + int(done), rows=totals["rows"] + int(nrows))
        _progress(totals, clock.started)
        # free this round's rows before the next round allocates its own: one segment in memory
        del rows, summary_rows
    return totals


class _Clock:
    """Wall time per phase on this rank; `gather` takes the slowest rank of each phase."""

    def __init__(self):
        self.started = self.last = time.perf_counter()
        self.phases = {"plan": 0.0, "create": 0.0, "compute": 0.0, "wait": 0.0, "write": 0.0}

    def lap(self, phase):
        now = time.perf_counter()
        self.phases[phase] += now - self.last
        self.last = now

    def gather(self, comm):
        import resource

        names = sorted(self.phases)
        local = [self.phases[name] for name in names] + [time.perf_counter() - self.started]
        slowest = np.max(comm.allgather(local), axis=0)
        timings = {name: round(float(value), 4) for name, value in zip(names + ["total"], slowest)}
        # ru_maxrss is in KiB on Linux
        peak = comm.allgather(round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
        return timings, peak


def _file_attrs(options, comm, command_line, plan):
    names = {column.name for column in plan.columns}
    mask_columns = None
    for kind in ("anymask", "allmask"):
        if f"tractor_{kind}_g" in names or f"tractor_decam_{kind}" in names:
            mask_columns = kind
            break
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "software_version": __version__,
        "creation_time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command_line": command_line,
        "inputs": options.fingerprint(),
        "match_radius_arcsec": options.match_radius,
        "obiwan_mask_bits": {name: {"bit": bit, "meaning": text} for name, (bit, text) in OBIWAN_BITS.items()},
        "targets_mask_bits": selection.BIT_DEFINITIONS,
        "selections": selection.selection_definitions(mask_columns),
        "nranks": comm.size,
    }


def _resume_mismatch(writer, index, plan, options, comm):
    """Why the existing file cannot be resumed with this plan and these options, or None."""
    stored = summary = ours = None
    if writer.file is not None:
        stored = json.loads(writer.file.attrs.get("inputs", "{}"))
        ours = writer.file.attrs.get("format") == FORMAT_NAME
        summary = sorted(writer.file["summary"]) if "summary" in writer.file else []
    if writer.mode == "funnel":
        # only rank 0 holds the file: every rank must reach the same answer
        stored, summary, ours = comm.bcast((stored, summary, ours), root=0)
    if not ours:
        return f"{options.output}: not an obiwan_h5 file"
    if summary != sorted(SUMMARY_COLUMNS):
        return f"{options.output}: made by a version with other summary columns; cannot resume"
    for key, value in options.fingerprint().items():
        if stored.get(key) != value:
            return f"{options.output}: made with {key}={stored.get(key)!r}, now {value!r}; cannot resume"
    names = [name.decode() for name in index["name"]]
    if names != plan.bricknames:
        return f"{options.output}: brick list differs from the file's; cannot resume"
    changed = np.flatnonzero((index["count"] != plan.counts) | (index["offset"] != plan.offsets))
    if len(changed):
        return f"{options.output}: brick {names[changed[0]]} now has {plan.counts[changed[0]]} rows, the file {index['count'][changed[0]]}; cannot resume"
    return None


def _progress(totals, started):
    elapsed = max(time.perf_counter() - started, 1e-9)
    remaining = totals["bricks"] - totals["done"]
    rate = totals["done"] / elapsed
    eta = remaining / rate if rate > 0 else float("nan")
    log.info("bricks %d/%d, %d rows, %.0f rows/s, ETA %.0f s",
             totals["done"], totals["bricks"], totals["rows"], totals["rows"] / elapsed, eta)


def _final_report(path, index, elapsed):
    """The closing table: bricks and rows by status, from the file's own index."""
    lines = [f"wrote {path} in {elapsed:.1f} s", f"  {'status':<11}{'bricks':>9}{'rows':>12}"]
    for code, name in STATUS_NAMES.items():
        chosen = index["status"] == code
        lines.append(f"  {name:<11}{int(chosen.sum()):>9}{int(index['count'][chosen].sum()):>12}")
    log.info("\n".join(lines))
