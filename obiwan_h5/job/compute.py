"""The compute phase: a rank derives its bricks, one memory-bounded segment at a time.

Rows go straight into one buffer per column, shaped as the plan: the only copy of the
derived rows between the catalogs and the collective write. Any exception in one brick
fails that brick alone (its planned rows keep fill values) and the segment goes on.
"""

import logging

import numpy as np

from ..core.derivation import brick_parts
from ..core.schema import conform_into
from ..core.summary import empty_summary, summarise_brick
from ..errors import BrickError, InputError
from ..fileformat import DONE, FAILED, INCOMPLETE, SUMMARY_COLUMNS, rows_checksum, summary_column_type
from ..production.inputs import primary_tractor, read_radec
from .scan import brick_failure

__all__ = ["BrickReader", "compute_segment"]

log = logging.getLogger("obiwan_h5.derive")


class BrickReader:
    """Reads a brick's remaining inputs and derives its rows; a rank's read-only job state.

    Parameters
    ----------
    production : production.Production
    truth : production.truth.TruthTable
    bounds : dict
        survey-bricks rows by brick name.
    options : job.options.DeriveOptions
    scanned : dict, optional
        `scan.BrickInputs` by brick name, from this rank's scan.
    copies : dict, optional
        For an update: brick index of the plan -> brick index in `old`, for the bricks
        whose rows are copied instead of derived.
    old : job.update.OldFile, optional
    """

    def __init__(self, production, truth, bounds, options, scanned=None, copies=None, old=None):
        self.production = production
        self.truth = truth
        self.bounds = bounds
        self.options = options
        self.scanned = scanned or {}
        self.copies = copies or {}
        self.old = old

    def parts(self, brickname):
        """The brick's derived columns, one dict per rsdir (`core.derivation.brick_parts`),
        and its number of Tractor sources (brick_primary rows over its rsdirs, the summary's
        ``nobjs``)."""
        inputs = self.scanned.pop(brickname, None)
        if inputs is None:
            raise BrickError("not scanned on this rank (internal error)")
        parts = []
        for scanned in inputs.parts:
            others = [name for name in scanned.simcat.by_lower if name not in scanned.injected]
            simcat = scanned.simcat.read(others, scanned.rows)
            simcat.update(scanned.injected)
            simcat = {name: simcat[name] for name in scanned.simcat.by_lower}
            tractor = primary_tractor(scanned.tractor, self.options.keep_all_apflux)
            parts.append((scanned.rsdir, simcat, tractor))
        truth = self.truth.lookup(inputs.ids)
        dr_radec = read_radec(self.production.dr_tractor(brickname))
        nobjs = sum(len(tractor) for _, _, tractor in parts)
        return brick_parts(brickname, parts, truth, dr_radec, self.options.match_radius), nobjs


    def segment_ids(self, plan, b0, b1):
        """The injected ids of the bricks of [b0, b1) this rank will derive."""
        chosen = [self.scanned[name].ids for name in plan.bricknames[b0:b1] if name in self.scanned]
        return np.concatenate(chosen) if chosen else np.zeros(0, np.int64)


def compute_segment(reader, plan, b0, b1, on_brick=None):
    """Rows, summary rows, statuses, messages and checksums of bricks [b0, b1).

    Collective when the truth is shared by the ranks (`truthshare.SharedTruth`): every rank
    calls it once per write round, with an empty segment when it has none. `on_brick`,
    when given, is called with each brick's planned row count once the brick is derived
    (progress).
    """
    prefetch = getattr(reader.truth, "prefetch", None)
    if prefetch is not None:
        prefetch(reader.segment_ids(plan, b0, b1))
    nrows = int(plan.counts[b0:b1].sum())
    rows = {column.name: np.empty((nrows,) + column.shape, column.dtype) for column in plan.columns} if nrows else {}
    names = sorted(column.name for column in plan.columns)
    summaries, status, messages, checksums = [], [], [], []
    _copy_runs(reader, plan, b0, b1, rows)
    lo = 0
    for brick in range(b0, b1):
        name, count = plan.bricknames[brick], int(plan.counts[brick])
        hi = lo + count
        if brick in reader.copies:
            view = {column: values[lo:hi] for column, values in rows.items()}
            outcome = (DONE, "", reader.old.summary_row(reader.copies[brick]), rows_checksum(view, names))
        elif plan.status[brick] in (FAILED, INCOMPLETE):
            outcome = (int(plan.status[brick]), plan.messages[brick], empty_summary(name, reader.bounds.get(name)), 0)
        else:
            try:
                pieces, nobjs = reader.parts(name)
                derived = sum(len(piece["unique_id"]) for piece in pieces)
                if derived != count:
                    raise BrickError(f"{derived} rows derived, {count} planned (inputs changed?)")
                at = lo
                for piece in pieces:
                    conform_into(rows, at, piece, plan.columns, len(piece["unique_id"]))
                    at += len(piece["unique_id"])
                view = {column: values[lo:hi] for column, values in rows.items()}
                outcome = (DONE, "", summarise_brick(name, view, reader.bounds[name], nobjs), rows_checksum(view, names))
            except Exception as err:  # noqa: BLE001 — one brick's failure must never stop the job
                message = brick_failure(err)
                log.warning("brick %s failed: %s", name, message)
                if not isinstance(err, (BrickError, InputError)):
                    log.debug("brick %s: traceback", name, exc_info=True)
                conform_into(rows, lo, {}, plan.columns, count)
                outcome = (FAILED, message, empty_summary(name, reader.bounds.get(name)), 0)
        status.append(outcome[0])
        messages.append(outcome[1])
        summaries.append(outcome[2])
        checksums.append(outcome[3])
        lo = hi
        if on_brick is not None:
            on_brick(count)
    summary_rows = {}
    if summaries:
        summary_rows = {column: np.array([row[column] for row in summaries], dtype=summary_column_type(column)[0])
                        for column in SUMMARY_COLUMNS}
    return rows, summary_rows, np.array(status, dtype=np.int8), messages, checksums


def _copy_runs(reader, plan, b0, b1, rows):
    """Fill the rows of copied bricks of ``[b0, b1)`` from the old file, one read per
    column for each run of bricks that are consecutive in both files."""
    if not reader.copies:
        return
    starts = np.concatenate([[0], np.cumsum(plan.counts[b0:b1])])
    brick = b0
    while brick < b1:
        if brick not in reader.copies:
            brick += 1
            continue
        end = brick + 1
        while end < b1 and reader.copies.get(end) == reader.copies[end - 1] + 1:
            end += 1
        reader.old.fill(rows, int(starts[brick - b0]), reader.copies[brick], reader.copies[end - 1] + 1, plan.columns)
        brick = end
