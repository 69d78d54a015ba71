"""The truth-table index (`production.truth.build_index`): sorted and unsorted ids agree."""

import numpy as np
import pytest

from obiwan_h5.errors import InputError
from obiwan_h5.production.truth import build_index, rows_in_index


@pytest.mark.parametrize("ids", [np.arange(10, 1010, 3), np.random.default_rng(4).permutation(np.arange(10, 1010, 3))])
def test_index_finds_every_id_in_either_order(ids):
    sorted_ids, order = build_index(ids, "randoms.fits")
    assert np.all(np.diff(sorted_ids) > 0) and np.array_equal(ids[order], sorted_ids)
    wanted = np.array([ids[7], ids[0], 11, ids[-1]])
    assert rows_in_index(sorted_ids, order, wanted).tolist() == [7, 0, -1, len(ids) - 1]


def test_index_of_sorted_ids_does_not_alias_the_input():
    ids = np.arange(5, dtype=np.int64)
    sorted_ids, _ = build_index(ids, "randoms.fits")
    ids[0] = 99
    assert sorted_ids[0] == 0


@pytest.mark.parametrize("ids", [[1, 2, 2, 3], [3, 2, 1, 2]])
def test_duplicate_ids_are_refused_sorted_or_not(ids):
    with pytest.raises(InputError, match="randoms.fits: duplicate id 2"):
        build_index(np.array(ids), "randoms.fits")
