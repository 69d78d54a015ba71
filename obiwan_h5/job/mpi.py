"""MPI at the edge: the communicator, and agreement on errors that must stop every rank.

With mpi4py available the job uses ``MPI.COMM_WORLD`` (one process started without a
launcher is a world of one). Without mpi4py, or with ``OBIWAN_H5_NO_MPI=1`` (e.g. on a
login node where MPI initialisation aborts), a `SerialComm` with the same methods stands in.
"""

import os

from ..errors import JobError

__all__ = ["SerialComm", "agree", "get_comm", "h5py_has_mpi", "mpi_max"]


class SerialComm:
    """The subset of the mpi4py communicator API the job uses, for one process."""

    rank = 0
    size = 1

    def bcast(self, obj, root=0):
        return obj

    def gather(self, obj, root=0):
        return [obj]

    def allgather(self, obj):
        return [obj]

    def allreduce(self, obj, op=None):
        return obj

    def Barrier(self):
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
