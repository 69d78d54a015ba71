"""The compute phase: a rank derives its bricks, one memory-bounded segment at a time.

Rows go straight into one buffer per column, shaped as the plan: the only copy of the
derived rows between the catalogs and the collective write. Any exception in one brick
fails that brick alone (its planned rows keep fill values) and the segment goes on.

A segment is computed in three steps: each brick's rows (`BrickReader.parts`) placed in
the buffers; the target selection of the whole segment at once (its cuts are per row, and
one call over thousands of rows costs what one call over a brick's few hundred does); then
each brick's summary row and checksum, which need its ``targets_mask``.
"""

import logging
from typing import NamedTuple

import numpy as np

from ..core.derivation import add_targets_mask, brick_parts, rows_targets_mask
from ..core.schema import conform_into
from ..core.summary import empty_summary, summarise_brick, summarise_bricks
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
        """The brick's derived columns, one dict per rsdir (`core.derivation.brick_parts`,
        without ``targets_mask``), and its number of Tractor sources (brick_primary rows over
        its rsdirs, the summary's ``nobjs``)."""
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
        return brick_parts(brickname, parts, truth, dr_radec, self.options.match_radius, select=False), nobjs


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
    starts = np.concatenate([[0], np.cumsum(plan.counts[b0:b1])]).astype(np.int64)
    _copy_runs(reader, plan, b0, b1, rows)
    outcomes, derived = {}, {}
    for brick in range(b0, b1):
        lo, hi = int(starts[brick - b0]), int(starts[brick - b0 + 1])
        if brick in reader.copies:
            outcomes[brick] = (DONE, "", reader.old.summary_row(reader.copies[brick]))
        elif plan.status[brick] in (FAILED, INCOMPLETE):
            outcomes[brick] = (int(plan.status[brick]), plan.messages[brick], None)
        else:
            try:
                derived[brick] = _place_brick(reader, plan, brick, rows, lo)
            except Exception as err:  # noqa: BLE001 — one brick's failure must never stop the job
                outcomes[brick] = _fail(rows, plan, brick, lo, err)
        if on_brick is not None:
            on_brick(hi - lo)
    _select_rows(rows, plan, derived, outcomes)
    _summarise_rows(rows, plan, reader, derived, outcomes)
    names = sorted(column.name for column in plan.columns)
    status, messages, summaries, checksums = [], [], [], []
    for brick in range(b0, b1):
        name = plan.bricknames[brick]
        code, message, summary = outcomes[brick]
        status.append(code)
        messages.append(message)
        summaries.append(summary if summary is not None else empty_summary(name, reader.bounds.get(name)))
        if code == DONE:
            lo, hi = int(starts[brick - b0]), int(starts[brick - b0 + 1])
            checksums.append(rows_checksum({column: values[lo:hi] for column, values in rows.items()}, names))
        else:
            checksums.append(0)
    summary_rows = {}
    if summaries:
        summary_rows = {column: np.array([row[column] for row in summaries], dtype=summary_column_type(column)[0])
                        for column in SUMMARY_COLUMNS}
    return rows, summary_rows, np.array(status, dtype=np.int8), messages, checksums


class _Placed(NamedTuple):
    lo: int        # the brick's first row in the buffers
    nobjs: int     # the brick's Tractor sources (summary column nobjs)
    pending: list  # (start, stop) buffer rows of its pieces still to select (`_select_rows`)


def _place_brick(reader, plan, brick, rows, lo):
    """Derive a brick and place its pieces at row `lo` of the buffers.

    A piece that lacks a column of the plan is selected now, on its own columns; the
    others are selected with the whole segment (`_select_rows`).
    """
    pieces, nobjs = reader.parts(plan.bricknames[brick])
    derived = sum(len(piece["unique_id"]) for piece in pieces)
    if derived != int(plan.counts[brick]):
        raise BrickError(f"{derived} rows derived, {int(plan.counts[brick])} planned (inputs changed?)")
    complete = {column.name for column in plan.columns} - {"targets_mask"}
    partial = [piece for piece in pieces if not complete <= piece.keys()]
    if partial:
        add_targets_mask(partial)
    pending, at = [], lo
    for piece in pieces:
        size = len(piece["unique_id"])
        conform_into(rows, at, piece, plan.columns, size)
        if "targets_mask" not in piece:
            pending.append((at, at + size))
        at += size
    return _Placed(lo, nobjs, pending)


def _select_rows(rows, plan, derived, outcomes):
    """``targets_mask`` of the pending rows of the derived bricks, one call per run of
    adjacent rows; should a run fail, its bricks are selected one by one, so that only a
    brick whose own selection fails is marked failed."""
    runs = []  # [start, stop, bricks]
    for brick in sorted(derived):
        for start, stop in derived[brick].pending:
            if runs and runs[-1][1] == start:
                runs[-1][1] = stop
                runs[-1][2].add(brick)
            else:
                runs.append([start, stop, {brick}])
    for start, stop, bricks in runs:
        try:
            _select_range(rows, start, stop)
        except Exception:  # noqa: BLE001 — find the brick at fault
            for brick in sorted(bricks):
                try:
                    for first, last in derived[brick].pending:
                        _select_range(rows, first, last)
                except Exception as err:  # noqa: BLE001
                    outcomes[brick] = _fail(rows, plan, brick, derived[brick].lo, err)


def _summarise_rows(rows, plan, reader, derived, outcomes):
    """Summary rows of the derived bricks whose selection went through, all at once
    (`core.summary.summarise_bricks`); should that fail, brick by brick, so that only a
    brick whose own summary fails is marked failed."""
    bricks = [brick for brick in sorted(derived) if brick not in outcomes]
    ranges = [(derived[brick].lo, derived[brick].lo + int(plan.counts[brick])) for brick in bricks]
    try:
        names = [plan.bricknames[brick] for brick in bricks]
        summaries = summarise_bricks(names, rows, ranges, [reader.bounds[name] for name in names],
                                     [derived[brick].nobjs for brick in bricks]) if bricks else []
    except Exception:  # noqa: BLE001 — find the brick at fault
        summaries = None
    for index, brick in enumerate(bricks):
        if summaries is not None:
            outcomes[brick] = (DONE, "", summaries[index])
            continue
        name, (lo, hi) = plan.bricknames[brick], ranges[index]
        try:
            view = {column: values[lo:hi] for column, values in rows.items()}
            outcomes[brick] = (DONE, "", summarise_brick(name, view, reader.bounds[name], derived[brick].nobjs))
        except Exception as err:  # noqa: BLE001
            outcomes[brick] = _fail(rows, plan, brick, lo, err)


def _select_range(rows, start, stop):
    if stop > start:
        view = {column: values[start:stop] for column, values in rows.items()}
        rows["targets_mask"][start:stop] = rows_targets_mask(view)


def _fail(rows, plan, brick, lo, err):
    """Mark a brick failed: its rows back to fill values, its message logged."""
    name = plan.bricknames[brick]
    message = brick_failure(err)
    log.warning("brick %s failed: %s", name, message)
    if not isinstance(err, (BrickError, InputError)):
        log.debug("brick %s: traceback", name, exc_info=True)
    conform_into(rows, lo, {}, plan.columns, int(plan.counts[brick]))
    return (FAILED, message, None)


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
