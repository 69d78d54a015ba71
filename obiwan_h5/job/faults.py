"""Fault injection for crash tests: SIGKILL a rank at a named point of the job.

Set ``OBIWAN_H5_KILL_AT=POINT[:ROUND][@RANK]`` (RANK a number or ``all``, default 0;
ROUND counts write rounds from 0, default 0). Points, in job order:

``plan``    after the plan is agreed, before the file exists;
``create``  after the ``randoms`` datasets are created, before the file is complete;
``write``   after a round's rows are written, before they are flushed;
``status``  after a round's statuses are written, before they are flushed.

Unset (always, outside tests) it costs one dictionary lookup per point.
"""

import os
import signal

__all__ = ["KILL_POINTS", "maybe_kill"]

KILL_POINTS = ("plan", "create", "write", "status")


def _parse(spec):
    point, _, rank = spec.partition("@")
    point, _, round_number = point.partition(":")
    if point not in KILL_POINTS:
        raise ValueError(f"OBIWAN_H5_KILL_AT={spec!r}: point must be one of {', '.join(KILL_POINTS)}")
    return point, int(round_number or 0), rank or "0"


def maybe_kill(point, rank, round_number=0):
    """SIGKILL this process if ``OBIWAN_H5_KILL_AT`` names this point, round and rank."""
    spec = os.environ.get("OBIWAN_H5_KILL_AT")
    if not spec:
        return
    want_point, want_round, want_rank = _parse(spec)
    if point == want_point and round_number == want_round and want_rank in ("all", str(rank)):
        os.kill(os.getpid(), signal.SIGKILL)
