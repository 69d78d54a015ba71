"""`export_common.read_ahead`: the next batch made by a helper thread while the caller
writes this one; order kept, memory bounded, errors raised in the caller, nothing left
running."""

import threading
import time

import pytest

from obiwan_h5.errors import InputError
from obiwan_h5.read.export_common import read_ahead


def _threads():
    return [thread for thread in threading.enumerate() if thread.name == "obiwan-h5-read-ahead"]


def test_items_come_in_order_and_at_most_depth_wait():
    made = []

    def items():
        for number in range(20):
            made.append(number)
            yield number

    got = []
    for item in read_ahead(items(), depth=2):
        time.sleep(0.01)  # the consumer is slower: the producer runs ahead, but no further
        # taken so far, at most two waiting in the queue and one in the producer's hands
        assert len(made) <= item + 1 + 2 + 1
        got.append(item)
    assert got == list(range(20))
    assert not _threads()


def test_an_error_of_the_producer_is_raised_in_the_caller():
    def items():
        yield 1
        raise InputError("x.h5: broken column")

    got = []
    with pytest.raises(InputError, match="x.h5: broken column"):
        for item in read_ahead(items()):
            got.append(item)
    assert got == [1]
    assert not _threads()


def test_a_caller_that_stops_early_stops_the_producer():
    made = []

    def items():
        for number in range(10**6):
            made.append(number)
            yield number

    closed = []

    def items_closed_after():
        try:
            yield from items()
        finally:
            closed.append(threading.current_thread().name)

    batches = read_ahead(items_closed_after())
    assert next(batches) == 0
    batches.close()
    assert not _threads()
    assert len(made) <= 3
    # the source generator is closed, by the thread that ran it
    assert closed == ["obiwan-h5-read-ahead"]


def test_an_error_of_the_caller_stops_the_producer_when_closed():
    """The export closes the generator on any error (`contextlib.closing`), so the thread
    never reads a source file that is being closed."""
    import contextlib

    def items():
        yield from range(10**6)

    with pytest.raises(OSError, match="disk full"):
        with contextlib.closing(read_ahead(items())) as ahead:
            for item in ahead:
                if item == 3:
                    raise OSError("disk full")
    assert not _threads()
