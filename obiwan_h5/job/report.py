"""What the job tells: timings per phase, the file's provenance attributes, progress (rank 0
only) and the closing table."""

import logging
import time
from datetime import datetime, timezone

import numpy as np

from .. import __version__
from ..core import selection
from ..core.photometry import QUANTITIES
from ..fileformat import FORMAT_NAME, FORMAT_VERSION, STATUS_NAMES, TRUTH_PREFIX, mask_bits_attributes, tractor_column
from ..progress import start_progress

__all__ = ["Clock", "JobProgress", "file_attrs", "final_report", "log_brick_problems"]

log = logging.getLogger("obiwan_h5.derive")


class Clock:
    """Wall time per phase on this rank; `gather` takes the slowest rank of each phase."""

    def __init__(self):
        self.started = self.last = time.perf_counter()
        self.phases = {"plan": 0.0, "create": 0.0, "compute": 0.0, "wait": 0.0, "write": 0.0}

    def lap(self, phase):
        """Add the time since the last lap to `phase`."""
        now = time.perf_counter()
        self.phases[phase] += now - self.last
        self.last = now

    def gather(self, comm):
        """Collective: ``(timings, peak)``, each phase's time on the slowest rank (with the
        total) and every rank's peak resident memory in MiB."""
        import resource

        names = sorted(self.phases)
        local = [self.phases[name] for name in names] + [time.perf_counter() - self.started]
        slowest = np.max(comm.allgather(local), axis=0)
        timings = {name: round(float(value), 4) for name, value in zip(names + ["total"], slowest)}
        # ru_maxrss is in KiB on Linux
        peak = comm.allgather(round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
        return timings, peak


def file_attrs(options, comm, command_line, plan):
    """The root attributes of a new file: format, provenance, bit and selection
    definitions; with truth from PostgreSQL, what its NULLs became."""
    names = {column.name for column in plan.columns}
    mask_columns = None
    for kind in ("anymask", "allmask"):
        stem, decam = QUANTITIES[kind]
        if tractor_column(f"{stem}_g") in names or tractor_column(decam) in names:
            mask_columns = kind
            break
    attrs = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "software_version": __version__,
        "creation_time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command_line": command_line,
        "inputs": options.recorded_inputs(),
        "match_radius_arcsec": options.match_radius,
        **mask_bits_attributes(),
        "selections": selection.selection_definitions(mask_columns),
        "nranks": comm.size,
        "fingerprint_kind": options.fingerprint_kind,
        "compression": options.compression_text,
    }
    if options.randoms_db is not None:
        attrs["truth_null_values"] = truth_null_values(plan.columns)
    return attrs


def truth_null_values(columns):
    """``{column: value}``: what a NULL of the truth table became in each ``psql_*``
    column that has no NaN to hold it (integers: the smallest value of the dtype; booleans:
    false; text: empty), so that readers can mask them."""
    from ..production.truthdb import NULL_FILL

    found = {}
    for column in columns:
        dtype = np.dtype(column.dtype)
        if column.name.startswith(TRUTH_PREFIX) and dtype.kind in "iubS":
            value = NULL_FILL[dtype.str] if dtype.kind in "iu" else NULL_FILL[dtype.kind]
            found[column.name] = value.decode() if isinstance(value, bytes) else (
                bool(value) if dtype.kind == "b" else int(value))
    return found


class JobProgress:
    """Bricks and rows derived by every rank, shown by rank 0 alone (`progress.Progress`).

    Each rank counts the bricks it has derived; the other ranks send their running counts
    to rank 0 with a non-blocking message after each brick, and rank 0 reads whatever has
    arrived after each of its own bricks, so that its lines move brick by brick even when
    a write round spans the whole job. The counts are cumulative, so a late message never
    counts twice; each round's collective (`round_done`) makes them exact. Messages go
    only when rank 0 shows progress, and `close` receives every one of them before the
    job goes on.

    Parameters
    ----------
    comm : communicator
    progress : bool, None or progress.ProgressStyle
        Rank 0's choice (the others' is ignored).
    bricks, rows : int
        Bricks and planned rows to derive, over every rank.
    desc : str
        The command shown at the start of each line (``maps`` reuses this reporter).
    """

    TAG = 0x0B1  # point-to-point tag of the progress messages (the job has no other)

    def __init__(self, comm, progress, bricks, rows, desc="derive"):
        self.comm = comm
        self.wanted = bool(comm.bcast(bool(progress) if comm.rank == 0 else None, root=0))
        self.mine = (0, 0)
        self.sent, self.requests = 0, []
        self.seen = [(0, 0)] * comm.size
        self.shown = None  # the counts last shown: a round's gathers often bring nothing new
        self.received = [0] * comm.size
        self.reporter = start_progress(progress if comm.rank == 0 else False, bricks, "bricks", desc,
                                       rows_total=rows)

    def brick(self, rows):
        """This rank has derived one more brick of `rows` planned rows."""
        self.mine = (self.mine[0] + 1, self.mine[1] + int(rows))
        if not self.wanted:
            return
        if self.comm.rank != 0:
            self.requests = [request for request in self.requests if not request.Test()]
            self.requests.append(self.comm.isend(self.mine, dest=0, tag=self.TAG))
            self.sent += 1
        else:
            self.seen[0] = self.mine
            self.refresh()

    def refresh(self):
        """On rank 0: take in the counts that have arrived and show them."""
        if self.comm.rank == 0 and self.wanted:
            self._receive_arrived()
            self._show()

    def round_done(self):
        """Collective, once per write round: every rank's exact counts to rank 0."""
        counts = self.comm.gather((self.mine, self.sent), root=0)
        if self.comm.rank == 0 and self.wanted:
            for rank, (mine, _) in enumerate(counts):
                self.seen[rank] = max(self.seen[rank], tuple(mine))
            self.refresh()
        return counts

    def close(self):
        """Collective: rank 0 receives every message still on its way, then shows its
        last line; the others wait until their messages are received."""
        counts = self.round_done()
        if self.comm.rank == 0:
            if self.wanted:
                for rank, (_, sent) in enumerate(counts):
                    while self.received[rank] < sent:
                        self.comm.recv(source=rank, tag=self.TAG)
                        self.received[rank] += 1
            self.reporter.close()
        else:
            for request in self.requests:
                request.wait()
            self.requests = []

    def _receive_arrived(self):
        if self.comm.size == 1:
            return
        from mpi4py import MPI

        status = MPI.Status()
        while self.comm.iprobe(source=MPI.ANY_SOURCE, tag=self.TAG, status=status):
            rank = status.Get_source()
            counts = self.comm.recv(source=rank, tag=self.TAG)
            self.received[rank] += 1
            self.seen[rank] = max(self.seen[rank], tuple(counts))

    def _show(self):
        counts = (sum(done for done, _ in self.seen), sum(rows for _, rows in self.seen))
        if counts != self.shown:
            self.shown = counts
            self.reporter.moveto(*counts)


# bricks named one by one per reason in the log; the others are counted in one line (a brick
# list of a wrong production fails every brick alike, and 100,000 lines of one reason help nobody)
LOGGED_PER_REASON = 10


def log_brick_problems(problems):
    """Log the bricks the plan found failed or incomplete: `problems` are
    ``(brickname, status name, message)``; at most `LOGGED_PER_REASON` bricks per status and
    message by name, then one line with how many more there are (every one is in the file's
    ``bricks/status`` and ``bricks/message``)."""
    by_reason = {}
    for brickname, status, message in problems:
        by_reason.setdefault((status, message), []).append(brickname)
    for (status, message), names in by_reason.items():
        for brickname in names[:LOGGED_PER_REASON]:
            log.warning("brick %s %s: %s", brickname, status, message)
        if len(names) > LOGGED_PER_REASON:
            log.warning("... and %d more bricks %s: %s (listed in the file's bricks/message)",
                        len(names) - LOGGED_PER_REASON, status, message)


def final_report(path, index, elapsed):
    """The closing table: bricks and rows by status, from the file's own index."""
    lines = [f"wrote {path} in {elapsed:.1f} s", f"  {'status':<11}{'bricks':>9}{'rows':>12}"]
    for code, name in STATUS_NAMES.items():
        chosen = index["status"] == code
        lines.append(f"  {name:<11}{int(chosen.sum()):>9}{int(index['count'][chosen].sum()):>12}")
    log.info("\n".join(lines))
