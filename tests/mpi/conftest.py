"""A watchdog for every MPI test.

A rank left waiting in a collective call that another rank never enters hangs the whole
job. Each test (setup, call and teardown) therefore runs under `faulthandler`'s timer:
past its time limit the rank prints the stack of every thread, which shows the call it
waits in, and exits with an error, which makes mpiexec end the other ranks. The limit is
`DEFAULT_TIMEOUT` seconds, or the test's own ``@pytest.mark.timeout(seconds)``.
"""

import faulthandler

import pytest

# the slowest MPI test (a crash and resume run) takes about a minute on a busy 2-core machine
DEFAULT_TIMEOUT = 300


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    marker = item.get_closest_marker("timeout")
    faulthandler.dump_traceback_later(marker.args[0] if marker else DEFAULT_TIMEOUT, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
