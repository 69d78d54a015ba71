"""The per-pixel aggregation of the maps (core.maps): exact counts whatever the split of the
rows, one fixed order of the floating-point sums, and NESTED degrading."""

import numpy as np
import pytest

from obiwan_h5.core.maps import (
    COUNTS,
    MAX_NSIDE,
    PixelCounts,
    check_nside,
    count_rows,
    degrade_nest,
    merge_counts,
    pixel_table,
)
from obiwan_h5.errors import InputError

NPIX = 12 * 8 * 8


def _rows(n=5000, nbricks=7, seed=0):
    rng = np.random.default_rng(seed)
    bricks = np.sort(rng.integers(0, nbricks, n))  # rows come brick by brick
    pixels = rng.integers(0, 40, n) + 3 * bricks
    return bricks, pixels, rng.integers(0, 4, n).astype(np.uint8), rng.integers(0, 64, n).astype(np.uint8)


def test_counts_of_any_split_of_the_rows_merge_to_the_counts_of_all_of_them():
    bricks, pixels, obiwan_mask, targets_mask = _rows()
    whole = count_rows(bricks, pixels, obiwan_mask, targets_mask, NPIX)
    rng = np.random.default_rng(1)
    for _ in range(5):
        cuts = np.sort(rng.integers(0, len(bricks), 6))
        partials = [count_rows(*(column[lo:hi] for column in (bricks, pixels, obiwan_mask, targets_mask)), NPIX)
                 for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(bricks)])]
        rng.shuffle(partials)
        keys, counts = merge_counts(partials)
        assert np.array_equal(keys, whole[0]) and np.array_equal(counts, whole[1])
    assert whole[1][:, COUNTS.index("n_inj")].sum() == len(bricks)
    assert whole[1][:, COUNTS.index("n_rec")].sum() == (obiwan_mask & 1).astype(bool).sum()
    assert whole[1][:, COUNTS.index("n_both_desi_elg")].sum() == ((targets_mask & 4) & (targets_mask >> 3)).astype(
        bool).sum()


def test_pixel_counts_merging_as_it_goes_equals_one_count():
    bricks, pixels, obiwan_mask, targets_mask = _rows(n=20000, nbricks=30)
    totals = PixelCounts(NPIX, min_pending=10)
    for lo in range(0, len(bricks), 777):
        totals.add(bricks[lo:lo + 777], pixels[lo:lo + 777], obiwan_mask[lo:lo + 777], targets_mask[lo:lo + 777])
    keys, counts = totals.result()
    whole = count_rows(bricks, pixels, obiwan_mask, targets_mask, NPIX)
    assert np.array_equal(keys, whole[0]) and np.array_equal(counts, whole[1])


def test_the_table_does_not_depend_on_the_order_of_the_keys():
    keys, counts = count_rows(*_rows(), NPIX)
    rng = np.random.default_rng(2)
    values = {"galdepth_g": rng.normal(24, 0.3, 7), "ebv": rng.uniform(0, 0.1, 7)}
    values["galdepth_g"][3] = np.nan
    pixels, table = pixel_table(keys, counts, NPIX, values)
    order = rng.permutation(len(keys))
    shuffled_pixels, shuffled = pixel_table(keys[order], counts[order], NPIX, values)
    assert np.array_equal(pixels, shuffled_pixels)
    for name in table:
        assert table[name].tobytes() == shuffled[name].tobytes(), name
    assert np.all(np.diff(pixels) > 0)
    assert np.isnan(table["psfsize_g"]).all()  # no summary values given for it


def test_degrading_nested_counts_equals_counting_at_the_coarser_resolution():
    import hpgeom
    rng = np.random.default_rng(3)
    ra, dec = rng.uniform(100, 140, 4000), rng.uniform(-5, 25, 4000)
    masks = rng.integers(0, 4, 4000), rng.integers(0, 64, 4000)
    zeros = np.zeros(4000, np.int64)
    fine = count_rows(zeros, hpgeom.angle_to_pixel(64, ra, dec), *masks, 12 * 64 ** 2)
    coarse = count_rows(zeros, hpgeom.angle_to_pixel(16, ra, dec), *masks, 12 * 16 ** 2)
    pixels, counts = degrade_nest(fine[0], fine[1], 4)
    assert np.array_equal(pixels, coarse[0]) and np.array_equal(counts, coarse[1])


@pytest.mark.parametrize("nside", [0, 3, 12, -4, 2.5, "8", MAX_NSIDE * 2])
def test_nside_must_be_a_power_of_two_in_range(nside):
    with pytest.raises(InputError, match="`nside`"):
        check_nside(nside)


def test_good_nsides_are_kept():
    assert [check_nside(n) for n in (1, 2, 1024, MAX_NSIDE)] == [1, 2, 1024, MAX_NSIDE]
