"""Fault injection for the crash and failure tests, at named points of the job.

Three environment variables, each ``POINT[:ROUND][@RANK]`` (RANK a number or ``all``,
default 0; ROUND counts write rounds from 0, default 0):

``OBIWAN_H5_KILL_AT``  SIGKILL the rank there (a node lost, an out-of-memory kill);
``OBIWAN_H5_FAIL_AT``  raise an unexpected `RuntimeError` there (a bug on one rank);
``OBIWAN_H5_FILL_AT``  fill the output's file system there (a full disk mid-job);
``OBIWAN_H5_TERM_AT``  send the rank SIGTERM there (Slurm ending the job, Ctrl-C).

Points, in job order:

``plan``    after the plan is agreed, before the file exists;
``create``  after the ``randoms`` datasets are created, before the file is complete;
``copy``    before an update copies a round's unchanged rows byte for byte (`job.bytecopy`);
``write``   after a round's rows are written, before they are flushed;
``status``  after a round's statuses are written, before they are flushed;
``close``   after the last round, before the file is marked complete and closed.

Unset (always, outside tests) it costs four dictionary lookups per point.
"""

import os
import signal

__all__ = ["FILLER_NAME", "KILL_POINTS", "maybe_kill"]

KILL_POINTS = ("plan", "create", "copy", "write", "status", "close")
# the file that OBIWAN_H5_FILL_AT writes beside the output (tests remove it to "free space")
FILLER_NAME = ".obiwan-h5-test-filler"


def _parse(variable, spec):
    point, _, rank = spec.partition("@")
    point, _, round_number = point.partition(":")
    if point not in KILL_POINTS:
        raise ValueError(f"{variable}={spec!r}: point must be one of {', '.join(KILL_POINTS)}")
    return point, int(round_number or 0), rank or "0"


def _matches(variable, point, rank, round_number):
    spec = os.environ.get(variable)
    if not spec:
        return False
    want_point, want_round, want_rank = _parse(variable, spec)
    return point == want_point and round_number == want_round and want_rank in ("all", str(rank))


def maybe_kill(point, rank, round_number=0, directory=None):
    """Apply the fault the environment names for this point, round and rank, if any."""
    if _matches("OBIWAN_H5_KILL_AT", point, rank, round_number):
        os.kill(os.getpid(), signal.SIGKILL)
    if _matches("OBIWAN_H5_TERM_AT", point, rank, round_number):
        os.kill(os.getpid(), signal.SIGTERM)
    if _matches("OBIWAN_H5_FAIL_AT", point, rank, round_number):
        raise RuntimeError(f"injected fault at {point}:{round_number} on rank {rank}")
    if directory is not None and _matches("OBIWAN_H5_FILL_AT", point, rank, round_number):
        _fill(os.path.join(directory, FILLER_NAME))


def _fill(path):
    """Fill the file system of `path` to the last byte (smaller and smaller writes once a
    large one no longer fits, so that not even a small HDF5 allocation fits after)."""
    with open(path, "ab", buffering=0) as handle:
        for size in (1 << 16, 1 << 12, 1 << 8, 1):
            block = b"\0" * size
            try:
                while True:
                    handle.write(block)
            except OSError:
                pass  # full for writes of this size
