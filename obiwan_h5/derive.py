"""`obiwan-h5 derive`: the whole job, plan → create → compute and write (SPEC §6).

The same code runs on 1 process or N MPI ranks. Per brick the work is: read its inputs
(`inputs`, via `BrickReader`), derive rows (`derivation.brick_parts`) and a summary
(`summary.summarise_brick`); everything collective happens in this file and in `writer`.
"""

import json
import logging
import os
import sys
import time
from datetime import datetime, timezone

import numpy as np

from . import __version__, selection
from .derivation import OBIWAN_BITS, BrickError, added_rows, brick_parts, brick_rows
from .faults import maybe_kill
from .inputs import TruthTable, read_ids_added, read_radec, read_simcat, read_survey_bricks, read_tractor
from .parallel import JobError, agree, get_comm, mpi_max
from .plan import (
    DONE,
    FAILED,
    INCOMPLETE,
    STATUS_NAMES,
    assign_ranges,
    build_plan,
    detach_schemas,
    gather_scans,
    scan_brick,
    split_segments,
)
from .production import InputError, Production, read_brick_list
from .schema import Column, conform_into, rows_checksum
from .summary import SUMMARY_COLUMNS, brick_area, summarise_brick
from .writer import FORMAT_NAME, FORMAT_VERSION, MAX_CALL_BYTES, DerivedWriter

__all__ = ["BrickReader", "DeriveOptions", "add_arguments", "derive", "run"]

log = logging.getLogger("obiwan_h5.derive")


class DeriveOptions:
    """Everything that determines the job; inputs default to the simulator's names."""

    def __init__(self, data_dir, output, randoms=None, dr_dir=None, survey_bricks=None, bricks=None,
                 objtype="elg", expect_rsdirs=None, match_radius=1.0, keep_all_apflux=False,
                 resume=False, overwrite=False, max_memory_mb=256, chunk_kb=4096,
                 mpi_info=None, alignment=None, max_call_bytes=MAX_CALL_BYTES):
        self.data_dir = os.path.abspath(data_dir)
        self.output = os.path.abspath(output)
        self.randoms = os.path.abspath(randoms or os.path.join(data_dir, "randoms.fits"))
        self.dr_dir = os.path.abspath(dr_dir or os.path.join(data_dir, "dr"))
        self.survey_bricks = os.path.abspath(survey_bricks or os.path.join(data_dir, "survey-bricks.fits"))
        self.bricks = os.path.abspath(bricks or os.path.join(data_dir, "bricks.txt"))
        self.objtype = objtype
        self.expect_rsdirs = expect_rsdirs
        self.match_radius = float(match_radius)
        self.keep_all_apflux = keep_all_apflux
        self.resume = resume
        self.overwrite = overwrite
        self.max_memory_mb = max_memory_mb
        self.chunk_kb = chunk_kb
        self.mpi_info = mpi_info or {}
        self.alignment = alignment
        self.max_call_bytes = max_call_bytes

    def fingerprint(self):
        """What must match for `--resume` to continue a file (inputs and options)."""
        return {
            "data_dir": self.data_dir, "randoms": self.randoms, "dr_dir": self.dr_dir,
            "survey_bricks": self.survey_bricks, "bricks": self.bricks, "objtype": self.objtype,
            "expect_rsdirs": self.expect_rsdirs, "match_radius_arcsec": self.match_radius,
            "keep_all_apflux": self.keep_all_apflux,
        }


def add_arguments(parser):
    parser.add_argument("--data-dir", required=True, help="production root holding obiwan/ and tractor/")
    parser.add_argument("-o", "--output", required=True, help="derived HDF5 file to write")
    parser.add_argument("--randoms", help="randoms truth table, FITS or HDF5 (default DATA_DIR/randoms.fits)")
    parser.add_argument("--dr-dir", help="real data release root with tractor/<bri>/ (default DATA_DIR/dr)")
    parser.add_argument("--survey-bricks", help="survey-bricks.fits[.gz] (default DATA_DIR/survey-bricks.fits)")
    parser.add_argument("--bricks", help="brick list, one name per line (default DATA_DIR/bricks.txt)")
    parser.add_argument("--objtype", default="elg", help="injected object type in file names (default elg)")
    parser.add_argument("--expect-rsdirs", type=int, help="bricks with another number of rsdirs are incomplete")
    parser.add_argument("--match-radius", type=float, default=1.0, help="match radius in arcsec (default 1)")
    parser.add_argument("--keep-all-apflux", action="store_true", help="keep every apflux_* Tractor column")
    parser.add_argument("--resume", action="store_true", help="complete an interrupted file: redo bricks not done")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--max-memory", type=float, default=256, metavar="MB",
                        help="memory per rank for rows between collective writes (default 256 MB); "
                             "peak memory stays flat whatever the production size")
    parser.add_argument("--chunk-kb", type=int, default=4096,
                        help="HDF5 chunk size per column in KiB; 0 = contiguous layout (default 4096)")
    parser.add_argument("--mpi-info", action="append", default=[], metavar="KEY=VALUE",
                        help="MPI-IO hint passed to the file driver (repeatable)")
    parser.add_argument("--align", type=int, default=0, metavar="BYTES",
                        help="align datasets of at least BYTES to BYTES (e.g. the Lustre stripe size)")


def run(args):
    hints = {}
    for item in args.mpi_info:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--mpi-info {item!r}: expected KEY=VALUE")
        hints[key] = value
    options = DeriveOptions(
        args.data_dir, args.output, randoms=args.randoms, dr_dir=args.dr_dir,
        survey_bricks=args.survey_bricks, bricks=args.bricks, objtype=args.objtype,
        expect_rsdirs=args.expect_rsdirs, match_radius=args.match_radius,
        keep_all_apflux=args.keep_all_apflux, resume=args.resume, overwrite=args.overwrite,
        max_memory_mb=args.max_memory, chunk_kb=args.chunk_kb, mpi_info=hints,
        alignment=(args.align, args.align) if args.align else None,
    )
    comm = get_comm()
    try:
        result = derive(options, comm, command_line=" ".join(sys.argv))
    except JobError as err:
        if comm.rank == 0:
            print(f"obiwan-h5 derive: error: {err}", file=sys.stderr)
        return 2
    return 1 if result["failed"] else 0


def _check_output(options):
    exists = os.path.exists(options.output)
    if exists and not (options.resume or options.overwrite):
        return f"{options.output}: exists; use --overwrite to replace it or --resume to complete it"
    directory = os.path.dirname(options.output) or "."
    if not os.path.isdir(directory):
        return f"{directory}: output directory does not exist"
    if not os.access(directory, os.W_OK):
        return f"{directory}: output directory is not writable"
    return None


def derive(options, comm, command_line=""):
    """Run the derive job on every rank of `comm`; returns a dict of totals on every rank."""
    clock = _Clock()
    if comm.rank != 0:
        log.setLevel(logging.WARNING)
    bricknames = _agree_bricks(options, comm)
    production = Production(options.data_dir, options.objtype, options.dr_dir)
    truth, bounds, plan = _make_plan(options, comm, production, bricknames)
    maybe_kill("plan", comm.rank)
    clock.lap("plan")
    writer, todo = _open_output(options, comm, plan, command_line)
    clock.lap("create")
    totals = _compute_and_write(writer, plan, todo, BrickReader(production, truth, bounds, options), comm, clock)
    index = writer.read_index()
    totals["failed"] = int(np.sum(index["status"] == FAILED))
    totals["incomplete"] = int(np.sum(index["status"] == INCOMPLETE))
    timings, peak_rss = clock.gather(comm)
    totals.update(timings=timings, peak_rss_mb=peak_rss, bytes_written=plan.total_rows * plan.row_bytes)
    writer.set_attrs({"complete": True, "elapsed_s": timings["total"], "timings_s": timings,
                      "peak_rss_mb": peak_rss})
    writer.close()
    comm.Barrier()  # every rank is done with the shared truth index
    if comm.rank == 0:
        truth.remove_index_files()
        _final_report(options.output, index, timings["total"])
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


def _agree_bricks(options, comm):
    """Rank 0 validates the brick list and the output path; every rank gets the list."""
    bricknames, error = None, None
    if comm.rank == 0:
        try:
            bricknames = read_brick_list(options.bricks)
            error = _check_output(options)
        except InputError as err:
            error = str(err)
    agree(comm, error)
    return comm.bcast(bricknames, root=0)


def _make_plan(options, comm, production, bricknames):
    """Every rank scans an equal share of the bricks; the plan is gathered everywhere."""
    truth, bounds, error = None, None, None
    try:
        # with several ranks the id index is built once, beside the output, and shared
        truth = TruthTable(options.randoms, comm, index_prefix=f"{options.output}.truth-index")
        bounds = read_survey_bricks(options.survey_bricks, bricknames) if comm.rank == 0 else None
    except InputError as err:
        error = str(err)
    agree(comm, error)
    bounds = comm.bcast(bounds, root=0)
    share = np.array_split(np.arange(len(bricknames)), comm.size)[comm.rank]
    scans = [scan_brick(production, bricknames[i], truth, bounds.get(bricknames[i]),
                        options.expect_rsdirs, options.keep_all_apflux) for i in share]
    scans, distinct = gather_scans(comm.allgather(detach_schemas(scans)))
    plan = build_plan(scans, distinct)
    if comm.rank == 0:
        for scan in scans:
            if scan.status in (FAILED, INCOMPLETE):
                log.warning("brick %s %s: %s", scan.brickname, STATUS_NAMES[scan.status], scan.message)
        log.info("plan: %d bricks, %d rows, %d columns (%.1f KiB/row) on %d rank(s)",
                 len(bricknames), plan.total_rows, len(plan.columns), plan.row_bytes / 1024, comm.size)
    return truth, bounds, plan


def _summary_columns():
    return [Column(name, np.dtype(dtype), (), text, unit) for name, (dtype, text, unit) in SUMMARY_COLUMNS.items()]


def _open_output(options, comm, plan, command_line):
    """Create the file collectively, or reopen it for --resume; returns (writer, todo)."""
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
        writer = DerivedWriter.create(options.output, comm, plan, _summary_columns(), attrs,
                                      chunk_bytes=options.chunk_kb * 1024, **writer_options)
        return writer, np.ones(len(plan.bricknames), dtype=bool)
    writer, error = None, None
    try:
        writer = DerivedWriter.open_existing(options.output, comm, **writer_options)
    except OSError as err:
        error = f"{options.output}: cannot reopen to resume ({err}); use --overwrite to start again"
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


def _compute_and_write(writer, plan, todo, reader, comm, clock):
    """Contiguous brick ranges balanced by rows still to compute, written round by round."""
    ranges = assign_ranges(np.where(todo, plan.counts, 0), comm.size)
    first, last = int(ranges[comm.rank]), int(ranges[comm.rank + 1])
    max_bytes = int(reader.options.max_memory_mb * (1 << 20) / 2)  # rows, plus a brick's pieces and their sources
    segments = split_segments(todo, first, last, plan.counts, plan.row_bytes, max_bytes)
    rounds = comm.allreduce(len(segments), op=mpi_max())
    randoms_names = sorted(column.name for column in plan.columns)
    summary_names = sorted(SUMMARY_COLUMNS)
    totals = {"bricks": int(todo.sum()), "done": 0, "rows": 0}
    for number in range(rounds):
        b0, b1 = segments[number] if number < len(segments) else (first, first)
        rows, summary_rows, status, messages, checksums = _compute_segment(reader, plan, b0, b1)
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


class BrickReader:
    """Reads a brick's inputs and derives its rows; holds a rank's read-only job state.

    Parameters
    ----------
    production : production.Production
    truth : inputs.TruthTable
    bounds : dict
        survey-bricks rows by brick name.
    options : DeriveOptions
    """

    def __init__(self, production, truth, bounds, options):
        self.production = production
        self.truth = truth
        self.bounds = bounds
        self.options = options

    def _inputs(self, brickname):
        production = self.production
        parts = []
        for rsdir in production.rsdirs(brickname):
            simcat = read_simcat(production.simcat(brickname, rsdir))
            ids_added = read_ids_added(production.ids_added(brickname, rsdir))
            keep = added_rows(simcat["id"], ids_added, where=f"{rsdir}: ")
            simcat = {name: values[keep] for name, values in simcat.items()}
            tractor = read_tractor(production.tractor(brickname, rsdir), self.options.keep_all_apflux)
            parts.append((rsdir, simcat, tractor))
        ids = np.concatenate([simcat["id"] for _, simcat, _ in parts]).astype(np.int64)
        return parts, self.truth.lookup(ids), read_radec(production.dr_tractor(brickname))

    def parts(self, brickname):
        """The brick's derived columns, one dict per rsdir (`derivation.brick_parts`)."""
        parts, truth, dr_radec = self._inputs(brickname)
        return brick_parts(brickname, parts, truth, dr_radec, self.options.match_radius)

    def rows(self, brickname):
        """The brick's derived columns as one dict (`derivation.brick_rows`)."""
        parts, truth, dr_radec = self._inputs(brickname)
        return brick_rows(brickname, parts, truth, dr_radec, self.options.match_radius)


def _compute_segment(reader, plan, b0, b1):
    """Rows, summary rows, statuses, messages and checksums of bricks [b0, b1).

    Rows go straight into one buffer per column, shaped as the plan: the only copy of
    the derived rows between the catalogs and the collective write.
    """
    nrows = int(plan.counts[b0:b1].sum())
    rows = {column.name: np.empty((nrows,) + column.shape, column.dtype) for column in plan.columns} if nrows else {}
    names = sorted(column.name for column in plan.columns)
    summaries, status, messages, checksums = [], [], [], []
    lo = 0
    for brick in range(b0, b1):
        name, count = plan.bricknames[brick], int(plan.counts[brick])
        hi = lo + count
        if plan.status[brick] in (FAILED, INCOMPLETE):
            outcome = (int(plan.status[brick]), plan.messages[brick], _empty_summary(name, reader.bounds.get(name)), 0)
        else:
            try:
                pieces = reader.parts(name)
                derived = sum(len(piece["unique_id"]) for piece in pieces)
                if derived != count:
                    raise BrickError(f"{derived} rows derived, {count} planned (inputs changed?)")
                at = lo
                for piece in pieces:
                    conform_into(rows, at, piece, plan.columns, len(piece["unique_id"]))
                    at += len(piece["unique_id"])
                view = {column: values[lo:hi] for column, values in rows.items()}
                outcome = (DONE, "", summarise_brick(name, view, reader.bounds[name]), rows_checksum(view, names))
            except (BrickError, InputError) as err:
                log.warning("brick %s failed: %s", name, err)
                conform_into(rows, lo, {}, plan.columns, count)
                outcome = (FAILED, str(err), _empty_summary(name, reader.bounds.get(name)), 0)
        status.append(outcome[0])
        messages.append(outcome[1])
        summaries.append(outcome[2])
        checksums.append(outcome[3])
        lo = hi
    summary_rows = {}
    if summaries:
        summary_rows = {column: np.array([row[column] for row in summaries], dtype=dtype)
                        for column, (dtype, _, _) in SUMMARY_COLUMNS.items()}
    return rows, summary_rows, np.array(status, dtype=np.int8), messages, checksums


def _empty_summary(brickname, bounds):
    row = {name: (0 if np.dtype(dtype).kind == "i" else np.nan) for name, (dtype, _, _) in SUMMARY_COLUMNS.items()}
    row["brickname"] = brickname.encode()
    if bounds is not None:
        ra, dec, ra1, ra2, dec1, dec2 = bounds
        row.update(ra=ra, dec=dec, brick_area=brick_area(ra1, ra2, dec1, dec2))
    return row


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
    stored = None
    if writer.file is not None:
        stored = json.loads(writer.file.attrs.get("inputs", "{}"))
        if writer.file.attrs.get("format") != FORMAT_NAME:
            return f"{options.output}: not an obiwan_h5 file"
    stored = comm.bcast(stored, root=0) if writer.mode == "funnel" else stored
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
