"""docs/format.md is generated from the code and must be current."""

import os

import pytest

from obiwan_h5.sim.reference import format_reference, where_computed

FORMAT_MD = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "format.md")


def test_format_reference_is_current():
    expected = format_reference()
    with open(FORMAT_MD) as handle:
        current = handle.read()
    assert current == expected, "docs/format.md is out of date: run `make docs` and commit it"


def test_every_column_says_where_it_is_computed():
    text = format_reference()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) > 150
    assert all(line.rstrip().endswith("` |") for line in rows)
    assert where_computed("randoms", "targets_mask").startswith("core.derivation.targets_bits")
    assert where_computed("randoms", "gflux", simcat_columns={"gflux"}).startswith("the simcat")


def test_a_column_of_unknown_origin_is_refused():
    for group, name, reason in [("randoms", "gflux", "randoms column 'gflux': not derived"),
                                ("randoms", "mystery", "randoms column 'mystery': not derived"),
                                ("summary", "mystery", "summary column 'mystery' is not in"),
                                ("bricks", "mystery", "index dataset 'mystery' is not in"),
                                ("elsewhere", "ra", "no group 'elsewhere' in the format")]:
        with pytest.raises(KeyError, match=reason):
            where_computed(group, name)
