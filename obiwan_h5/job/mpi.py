"""MPI at the edge: the communicator, and agreement on errors that must stop every rank.

With mpi4py available the job uses ``MPI.COMM_WORLD`` (one process started without a
launcher is a world of one). Without mpi4py, or with ``OBIWAN_H5_NO_MPI=1`` (e.g. on a
login node where MPI initialisation aborts), a `SerialComm` with the same methods stands in.
"""

import contextlib
import logging
import os
import signal
import sys

from ..errors import JobError, OutputError

__all__ = ["SerialComm", "abort_on_unagreed_errors", "agree", "get_comm", "h5py_has_mpi", "mpi_max"]

log = logging.getLogger("obiwan_h5.derive")


class SerialComm:
    """The subset of the mpi4py communicator API the job uses, for one process."""

    rank = 0
    size = 1

    def bcast(self, obj, root=0):
        """`obj` itself: the one rank is the root."""
        return obj

    def gather(self, obj, root=0):
        """``[obj]``, the one rank's object."""
        return [obj]

    def allgather(self, obj):
        """``[obj]``, the one rank's object."""
        return [obj]

    def allreduce(self, obj, op=None):
        """`obj` itself: the reduction of one value."""
        return obj

    def Barrier(self):
        """Nothing to wait for."""
        pass


def get_comm():
    """``MPI.COMM_WORLD`` when mpi4py is importable and not disabled, else a `SerialComm`."""
    if os.environ.get("OBIWAN_H5_NO_MPI"):
        return SerialComm()
    try:
        from mpi4py import MPI
    except ImportError:
        return SerialComm()
    return MPI.COMM_WORLD


def mpi_max():
    """The MPI MAX reduction op, or None for `SerialComm`."""
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI.MAX


def h5py_has_mpi():
    """Whether the installed h5py was built against parallel HDF5."""
    import h5py

    return bool(h5py.get_config().mpi)


def agree(comm, error):
    """Collective: raise `JobError` on every rank if any rank passes an error.

    Parameters
    ----------
    comm : communicator
    error : str or None
        This rank's error message, or None when this rank is fine.

    Every rank must call it at the same point; the messages of all failing ranks are
    joined so the user sees each problem once (a rank never hangs waiting for a peer
    that gave up).
    """
    errors = comm.allgather(error)
    failed = [message for message in errors if message]
    if failed:
        unique = list(dict.fromkeys(failed))
        raise JobError("; ".join(unique))


class _Signals:
    """SIGINT and SIGTERM during the job: remembered, and turned into `KeyboardInterrupt`.

    A signal that arrives while HDF5 writes would otherwise interrupt the write itself
    (the system call fails with EINTR) and be reported as an IO error with status 1; here
    system calls are restarted after the handler, and any error that follows a signal is
    the signal's (status 130).
    """

    NUMBERS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        try:
            for number in self.NUMBERS:
                self._previous[number] = signal.signal(number, self._handle)
                signal.siginterrupt(number, False)
        except ValueError:
            pass  # not the main thread: leave signals alone
        return self

    def __exit__(self, *exc):
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, signum, frame):
        self.received = signum
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def abort_on_unagreed_errors(comm, command="derive", advice="complete the file later with resume"):
    """End every rank when one rank meets an error the ranks did not agree on.

    Errors that must stop the job are agreed (`agree`) and raised as `JobError` on every
    rank. Anything else on one rank (a bug, MemoryError, an IO error inside a write,
    Ctrl-C, SIGTERM from Slurm) would leave the other ranks waiting forever in their next
    collective call and burn the allocation: with several ranks this prints one line and
    calls ``MPI_Abort``, which ends the whole job at once, with status 130 after a signal,
    2 when the output cannot be written (`OutputError`: a full disk, quota) and 1 otherwise.
    The file is left as it was at its last flush, so ``resume`` completes it. SIGTERM is
    turned into the same path as Ctrl-C; with one process, an error that follows a signal
    is raised as `KeyboardInterrupt`. `command` and `advice` make the line (an update has
    nothing to resume).
    """
    with _Signals() as signals:
        try:
            yield
        except JobError:
            raise
        except BaseException as err:
            interrupted = isinstance(err, KeyboardInterrupt) or signals.received is not None
            if comm.size > 1:
                log.debug("rank %d: unexpected error", comm.rank, exc_info=True)
                reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
                if interrupted and not isinstance(err, KeyboardInterrupt):
                    reason = f"interrupted by {signal.Signals(signals.received).name} ({reason})"
                sys.stderr.write(f"obiwan-h5 {command}: rank {comm.rank}: {reason}; ending every rank"
                                 f"{f' ({advice})' if advice else ''}\n")
                sys.stderr.flush()
                comm.Abort(130 if interrupted else 2 if isinstance(err, OutputError) else 1)
            if interrupted and not isinstance(err, KeyboardInterrupt):
                raise KeyboardInterrupt(f"signal {signal.Signals(signals.received).name}") from err
            raise
