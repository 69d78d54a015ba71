"""`obiwan-h5 maps` under MPI: the ranks share the rows, rank 0 writes the maps.

1. Rank 0 checks the request (`read.maps.prepare_maps`) and broadcasts the plan (or the
   one error, raised on every rank).
2. The chosen bricks are cut into contiguous ranges balanced by rows (`plan.assign_ranges`,
   as the derive job's), one per rank; each rank counts its rows per ``(brick, pixel)``
   (`read.maps.count_pixels`), showing progress through rank 0 (`report.JobProgress`).
3. The integer counts are gathered on rank 0 and merged (`core.maps.merge_counts`): the
   sums are exact, so the map rank 0 writes is the same for any number of ranks.

Errors that stop the maps (bad input, an unreadable batch, a failed write) are agreed by
all ranks and raised on each as the same error, never a hang. With one process (or a
`SerialComm`), this is `read.maps.make_maps`.
"""

from ..core.maps import merge_counts
from ..errors import InputError, JobError
from ..read.maps import BrickTicker, count_pixels, prepare_maps, write_maps
from ..read.reader import DEFAULT_BATCH_ROWS
from .mpi import SerialComm, agree
from .plan import assign_ranges
from .report import JobProgress

__all__ = ["run_maps"]


def run_maps(path, output, nside, nest=False, where=None, bricks=None, batch_rows=DEFAULT_BATCH_ROWS,
             overwrite=False, comm=None, progress=False, command_line=""):
    """Collective: write the maps of `path` to `output` with every rank of `comm`.

    Parameters are those of `read.maps.make_maps`; `comm` is the communicator (a
    `mpi.SerialComm` when None).

    Returns
    -------
    dict
        On every rank, what `read.maps.write_maps` returned on rank 0.

    Raises
    ------
    InputError
        On every rank, when rank 0 refuses the request.
    JobError
        On every rank, when a rank failed to read its rows or rank 0 failed to write.
    """
    comm = SerialComm() if comm is None else comm
    plan, refused = None, None
    if comm.rank == 0:
        try:
            plan = prepare_maps(path, output, nside, nest, where, bricks, batch_rows, overwrite)
        except InputError as err:
            refused = err
    plan, refused = comm.bcast((plan, refused), root=0)
    if refused is not None:
        raise refused  # rank 0's error itself on every rank, with its type

    bounds = assign_ranges(plan.brick_rows, comm.size)
    first, last = int(bounds[comm.rank]), int(bounds[comm.rank + 1])
    shown = JobProgress(comm, progress, len(plan.bricks), plan.rows, desc="maps")
    ticker = BrickTicker(plan.brick_rows[first:last], _BrickReports(shown, plan.brick_rows[first:last]))
    partial, error = None, None
    try:
        partial = count_pixels(plan, plan.bricks[first:last], on_read=ticker)
        ticker.finish()
    except Exception as err:  # noqa: BLE001 (any failure of one rank is agreed, then raised everywhere)
        error = f"rank {comm.rank}: {type(err).__name__}: {err}"
    shown.close()
    agree(comm, error)

    partials = comm.gather(partial, root=0)
    result, error = None, None
    if comm.rank == 0:
        try:
            keys, counts = merge_counts(partials)
            result = write_maps(plan, keys, counts, command_line)
        except Exception as err:  # noqa: BLE001
            error = f"{type(err).__name__}: {err}" if not isinstance(err, (InputError, JobError)) else str(err)
    agree(comm, error)
    return comm.bcast(result, root=0)


class _BrickReports:
    """`BrickTicker`'s report as `JobProgress` takes it: one call per brick done."""

    def __init__(self, progress, brick_rows):
        self.progress, self.brick_rows, self.done = progress, brick_rows, 0

    def __call__(self, done, rows):
        while self.done < done:
            self.progress.brick(int(self.brick_rows[self.done]))
            self.done += 1
