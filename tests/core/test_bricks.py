"""Brick lists: parsed in linear time (core/bricks.py), read from files (listfiles.py), in the order given, without repeats."""

import time

import pytest

from obiwan_h5.core.bricks import parse_brick_names
from obiwan_h5.errors import InputError
from obiwan_h5.listfiles import read_brick_list


def test_a_long_list_is_parsed_in_linear_time(tmp_path):
    names = [f"{i % 3600:04d}{'pm'[(i // 3600) % 2]}{i // 7200:03d}" for i in range(100_000)]
    assert len(set(names)) == len(names)
    listing = tmp_path / "bricks.txt"
    listing.write_text("\n".join(names + names[:1000]) + "\n")  # and a thousand repeats
    start = time.perf_counter()
    parsed = read_brick_list(str(listing))
    elapsed = time.perf_counter() - start
    # a membership test in a list made this quadratic: 158 s for 100,000 names
    assert elapsed < 1.0, elapsed
    assert parsed == sorted(names)


def test_names_keep_the_order_given_and_repeats_are_dropped():
    assert parse_brick_names(["0002p000, 0001p000", "0002p000 0003m010"]) == ["0002p000", "0001p000", "0003m010"]
    with pytest.raises(InputError, match="list.txt:2: 'x' is not a brick name"):
        parse_brick_names(["0001p000", "0001p000 x"], "list.txt")
    with pytest.raises(InputError, match="the brick list is empty"):
        parse_brick_names(["", "  "], "list.txt")
