"""The compute phase: a rank derives its bricks, one memory-bounded write round at a time.

A round goes through each step as one set of arrays, not brick by brick:

1. read: each brick's simcat rows, mapped Tractor catalogs and real DR positions
   (`scan.BrickInputs.read`); a brick that cannot be read fails alone;
2. truth: the truth rows of every id of the round, in one collective call
   (`truthshare`: ``fetch``);
3. derive: every piece of the round (one rsdir of one brick) matched in one pass, each
   column gathered once and placed once in the round's buffers, ``targets_mask`` selected
   for all rows at once (`core.derivation.derive_rows`);
4. summaries of all the round's bricks (`core.summary.summarise_bricks`), and their
   checksums in one pass over the buffers.

Rows go straight into one buffer per column, shaped as the plan: the only copy of the
derived rows between the catalogs and the collective write. Should a round-level step fail,
it is redone brick by brick, so that only a brick whose own step fails is marked failed
(its planned rows get fill values) and the round goes on.

Memory of a round: the buffers (``max_memory`` bounds them, `plan.split_segments`), the
positions of the round's Tractor sources, and the matched records gathered one column
group at a time; the catalogs themselves are mapped read-only, read by the page cache.
"""

import logging
from typing import NamedTuple

import numpy as np

from ..core.derivation import derive_rows
from ..core.summary import empty_summaries, summarise_brick, summarise_bricks
from ..errors import BrickError, InputError
from ..fileformat import DONE, FAILED, INCOMPLETE, fill_value, rows_checksums
from .scan import brick_failure
from .update import copy_runs

__all__ = ["BrickReader", "RoundResult", "compute_segment"]

log = logging.getLogger("obiwan_h5.derive")


class BrickReader:
    """A rank's job state for the compute phase (read-only once built).

    Parameters
    ----------
    truth : truthshare truth source
    bounds : dict
        survey-bricks rows by brick name.
    options : job.options.DeriveOptions
    scanned : scan.ScannedBricks
        What this rank's scan kept of the bricks it derives.
    copies : dict, optional
        For an update: brick index of the plan -> brick index in `old`, for the bricks
        whose rows are copied instead of derived.
    old : job.update.OldFile, optional
    byte_copied : set, optional
        The bricks of `copies` whose rows are copied byte for byte from file to file
        (`update.byte_copied_bricks`), in rounds of their own: they take no row buffers.
    """

    def __init__(self, truth, bounds, options, scanned, copies=None, old=None, byte_copied=()):
        self.truth = truth
        self.bounds = bounds
        self.options = options
        self.scanned = scanned
        self.copies = copies or {}
        self.old = old
        self.byte_copied = frozenset(byte_copied)
        self.arena = _Arena()


class _Arena:
    """The memory of the rounds' column buffers: one block, reused round after round.

    One large block is given huge pages by numpy (on kernels that offer them): writing a
    round's rows then costs a few page faults instead of one per 4 KiB, which on a virtual
    machine are a good part of the compute time; later rounds reuse pages already mapped.
    """

    ALIGN = 64

    def __init__(self):
        self.memory = np.empty(0, np.uint8)

    def buffers(self, columns, nrows):
        """One buffer per column of `columns` for `nrows` rows (their values undefined)."""
        sizes = [-(-nrows * column.row_bytes // self.ALIGN) * self.ALIGN for column in columns]
        if sum(sizes) > len(self.memory):
            self.memory = None  # free the smaller block before taking the larger one
            self.memory = np.empty(sum(sizes), np.uint8)
        buffers, at = {}, 0
        for column, size in zip(columns, sizes):
            block = self.memory[at:at + nrows * column.row_bytes]
            buffers[column.name] = block.view(column.dtype).reshape((nrows,) + tuple(column.shape))
            at += size
        return buffers


class RoundResult(NamedTuple):
    """What a write round computed for bricks ``[b0, b1)``."""

    rows: dict          # randoms column -> buffer of the round's rows
    summary: dict       # summary column -> one value per brick
    status: np.ndarray  # int8 per brick
    messages: list      # per brick ("" when done)
    checksums: list     # per brick (0 unless done)
    byte_runs: tuple = ()  # rows copied byte for byte: (first row in the new file, in the old, rows)


class _Outcome(NamedTuple):
    status: int
    message: str = ""
    summary: dict = None


class _Read(NamedTuple):
    pieces: list   # core.derivation.Piece of the brick
    dr: tuple      # ra, dec of its real DR catalog
    ids: np.ndarray


def compute_segment(reader, plan, b0, b1, on_brick=None):
    """Rows, summary rows, statuses, messages and checksums of bricks ``[b0, b1)``.

    Collective (the truth of the round is fetched by every rank together): every rank calls
    it once per write round, with an empty segment when it has none. `on_brick`, when
    given, is called with each brick's planned row count once its round is derived
    (progress).

    Returns
    -------
    RoundResult
    """
    nrows = int(plan.counts[b0:b1].sum())
    by_bytes = b1 > b0 and b0 in reader.byte_copied  # a round of only such bricks (`plan.split_segments`)
    rows = reader.arena.buffers(plan.columns, nrows) if nrows and not by_bytes else {}
    starts = np.concatenate([[0], np.cumsum(plan.counts[b0:b1])]).astype(np.int64)
    if not by_bytes:
        _copy_runs(reader, plan, b0, b1, rows)
    outcomes, read = {}, {}
    for brick in range(b0, b1):
        if brick in reader.copies:
            outcomes[brick] = _Outcome(DONE)  # its summary row and checksum: the old file's
        elif plan.status[brick] in (FAILED, INCOMPLETE):
            outcomes[brick] = _Outcome(int(plan.status[brick]), plan.messages[brick])
        else:
            try:
                read[brick] = _read_brick(reader, plan, brick, int(starts[brick - b0]))
            except Exception as err:  # noqa: BLE001 — one brick's failure must never stop the job
                outcomes[brick] = _fail(rows, plan, brick, int(starts[brick - b0]), err)
    truth = _fetch_truth(reader, plan, read, rows, starts, b0, outcomes)
    nobjs = _derive(reader, plan, read, truth, rows, starts, b0, outcomes)
    _summarise(rows, plan, reader, nobjs, starts, b0, outcomes)
    for brick in range(b0, b1):
        reader.scanned.release(plan.bricknames[brick])
        if on_brick is not None:
            on_brick(int(plan.counts[brick]))
    result = _result(reader, plan, b0, b1, rows, starts, [outcomes[brick] for brick in range(b0, b1)])
    if by_bytes:
        old_offsets = reader.old.index["offset"]
        result = result._replace(byte_runs=[
            (int(plan.offsets[first]), int(old_offsets[reader.copies[first]]), int(plan.counts[first:last].sum()))
            for first, last in copy_runs(reader.copies, b0, b1)])
    return result


def _result(reader, plan, b0, b1, rows, starts, outcomes):
    """The round's `RoundResult`: the derived bricks' checksums in one pass over the buffers
    (a copied brick's is its old one, when its rows are its old bytes), the summary rows as
    columns (copied ones taken from the old file's, empty ones for bricks not derived)."""
    copied = {number: reader.copies[b0 + number] for number in range(b1 - b0) if b0 + number in reader.copies}
    names = sorted(column.name for column in plan.columns)
    crcs = {number: int(reader.old.index["checksum"][old]) for number, old in copied.items()} \
        if copied and reader.old.same_columns(plan.columns) else {}
    done = [number for number, outcome in enumerate(outcomes) if outcome.status == DONE and number not in crcs]
    crcs.update(zip(done, rows_checksums(rows, names, [(int(starts[i]), int(starts[i + 1])) for i in done])))
    summary = empty_summaries(plan.bricknames[b0:b1], [reader.bounds.get(name) for name in plan.bricknames[b0:b1]])
    if copied:
        for column, values in summary.items():
            values[list(copied)] = reader.old.summary[column][list(copied.values())]
    derived = [number for number, outcome in enumerate(outcomes) if outcome.summary is not None and number not in copied]
    for column, values in summary.items():
        for number in derived:
            values[number] = outcomes[number].summary[column]
    return RoundResult(rows, summary, np.array([outcome.status for outcome in outcomes], dtype=np.int8),
                       [outcome.message for outcome in outcomes], [crcs.get(number, 0) for number in range(b1 - b0)])


def _read_brick(reader, plan, brick, start):
    """Open a brick's inputs for the round: its pieces from row `start` of the buffers."""
    pieces, dr = reader.scanned.get(plan.bricknames[brick]).read(start, reader.options.keep_all_apflux)
    derived = sum(len(piece.simcat) for piece in pieces)
    if derived != int(plan.counts[brick]):
        raise BrickError(f"{derived} rows derived, {int(plan.counts[brick])} planned (inputs changed?)")
    ids = np.concatenate([piece.simcat.column("id") for piece in pieces]) if pieces else np.zeros(0)
    return _Read(pieces, dr, np.asarray(ids, dtype=np.int64))


def _fetch_truth(reader, plan, read, rows, starts, b0, outcomes):
    """The truth columns of the ids of the bricks read, in brick order (one collective
    fetch); should the fetch fail, every brick read in this round fails with its message."""
    bricks = sorted(read)
    try:
        return reader.truth.fetch(np.concatenate([read[brick].ids for brick in bricks]) if bricks
                                  else np.zeros(0, np.int64))
    except Exception as err:  # noqa: BLE001 — the round's bricks fail, the job goes on
        for brick in bricks:
            outcomes[brick] = _fail(rows, plan, brick, int(starts[brick - b0]), err)
            del read[brick]
        return {}


def _derive(reader, plan, read, truth, rows, starts, b0, outcomes):
    """`derive_rows` of every piece of the round at once; should it fail, brick by brick.
    Returns each derived brick's Tractor sources (``nobjs``)."""
    bricks = sorted(read)
    radius = reader.options.match_radius
    dr = {plan.bricknames[brick]: read[brick].dr for brick in bricks}
    try:
        counts = iter(derive_rows([piece for brick in bricks for piece in read[brick].pieces], truth, dr, radius, rows))
        return {brick: sum(next(counts) for _ in read[brick].pieces) for brick in bricks}
    except Exception:  # noqa: BLE001 — find the brick at fault
        log.debug("round of bricks %s: derivation failed, redone brick by brick", bricks, exc_info=True)
    nobjs, at = {}, 0
    for brick in bricks:
        size = len(read[brick].ids)
        try:
            own = {name: values[at:at + size] for name, values in truth.items()}
            nobjs[brick] = sum(derive_rows(read[brick].pieces, own, dr, radius, rows))
        except Exception as err:  # noqa: BLE001
            outcomes[brick] = _fail(rows, plan, brick, int(starts[brick - b0]), err)
        at += size
    return nobjs


def _summarise(rows, plan, reader, nobjs, starts, b0, outcomes):
    """Summary rows of the derived bricks, all at once (`core.summary.summarise_bricks`);
    should that fail, brick by brick, so that only a brick whose own summary fails is
    marked failed."""
    bricks = [brick for brick in sorted(nobjs) if brick not in outcomes]
    ranges = [(int(starts[brick - b0]), int(starts[brick - b0 + 1])) for brick in bricks]
    names = [plan.bricknames[brick] for brick in bricks]
    try:
        summaries = summarise_bricks(names, rows, ranges, [reader.bounds[name] for name in names],
                                     [nobjs[brick] for brick in bricks]) if bricks else []
    except Exception:  # noqa: BLE001 — find the brick at fault
        summaries = None
    for index, brick in enumerate(bricks):
        if summaries is not None:
            outcomes[brick] = _Outcome(DONE, "", summaries[index])
            continue
        (lo, hi), name = ranges[index], names[index]
        try:
            view = {column: values[lo:hi] for column, values in rows.items()}
            outcomes[brick] = _Outcome(DONE, "", summarise_brick(name, view, reader.bounds[name], nobjs[brick]))
        except Exception as err:  # noqa: BLE001
            outcomes[brick] = _fail(rows, plan, brick, lo, err)


def _fail(rows, plan, brick, lo, err):
    """Mark a brick failed: its rows back to fill values, its message logged."""
    name = plan.bricknames[brick]
    message = brick_failure(err)
    log.warning("brick %s failed: %s", name, message)
    if not isinstance(err, (BrickError, InputError)):
        log.debug("brick %s: traceback", name, exc_info=True)
    hi = lo + int(plan.counts[brick])
    for column in plan.columns:
        if column.name in rows:
            rows[column.name][lo:hi] = fill_value(column.dtype)
    return _Outcome(FAILED, message)


def _copy_runs(reader, plan, b0, b1, rows):
    """Fill the rows of copied bricks of ``[b0, b1)`` from the old file, one read per
    column for each run of bricks that are consecutive in both files."""
    starts = np.concatenate([[0], np.cumsum(plan.counts[b0:b1])])
    for first, last in copy_runs(reader.copies, b0, b1):
        reader.old.fill(rows, int(starts[first - b0]), reader.copies[first], reader.copies[last - 1] + 1, plan.columns)
