"""A watchdog for every MPI test.

A rank left waiting in a collective call that another rank never enters hangs the whole
job. Each test (setup, call and teardown) therefore runs under `faulthandler`'s timer:
past its time limit the rank prints the stack of every thread, which shows the call it
waits in, and exits with an error, which makes mpiexec end the other ranks. The limit is
`DEFAULT_TIMEOUT` seconds, or the test's own ``@pytest.mark.timeout(seconds)``.

These tests run only under mpiexec with at least two ranks (`make test-mpi`); a plain
``pytest`` does not collect them (tests/conftest.py) and one process is refused.
"""

import faulthandler

import pytest
from mpi4py import MPI

# the slowest MPI test (a crash and resume run) takes about a minute on a busy 2-core machine
DEFAULT_TIMEOUT = 300
MIN_RANKS = 2


def pytest_configure(config):
    """Refuse to run on fewer than `MIN_RANKS` ranks: on one process the collective paths
    these tests exist for are not taken, and several checks hold trivially."""
    if MPI.COMM_WORLD.size < MIN_RANKS:
        raise pytest.UsageError(
            f"tests/mpi needs at least {MIN_RANKS} MPI ranks, got {MPI.COMM_WORLD.size}: run it under mpiexec, "
            f"e.g. mpiexec -n 2 python -m mpi4py -m pytest tests/mpi (make test-mpi)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    marker = item.get_closest_marker("timeout")
    faulthandler.dump_traceback_later(marker.args[0] if marker else DEFAULT_TIMEOUT, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
