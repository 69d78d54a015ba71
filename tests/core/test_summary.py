"""Per-brick summary rows against hand computation."""

import numpy as np

from obiwan_h5.core.summary import (
    brick_area,
    depth_at_half_recovered,
    empty_summary,
    ivar_to_depth,
    nobs_histogram,
    summarise_brick,
)
from obiwan_h5.fileformat import SUMMARY_COLUMNS


def test_brick_area_of_real_brick():
    # 1741p242: ra 173.98176292..174.25531915, dec 24.125..24.375
    area = brick_area(173.98176292, 174.25531915, 24.125, 24.375)
    width = np.radians(174.25531915 - 173.98176292)
    expected = width * (np.sin(np.radians(24.375)) - np.sin(np.radians(24.125))) * (180 / np.pi) ** 2
    assert np.isclose(area, expected) and 0.0620 < area < 0.0625


def test_ivar_to_depth():
    # 5 sigma at 1 nanomaggy (22.5 mag) needs sigma = 0.2, ivar = 25
    assert np.isclose(ivar_to_depth(25.0), 22.5)
    assert np.isnan(ivar_to_depth(0.0)) and np.isnan(ivar_to_depth(np.nan))


def test_depth_at_half_recovered():
    mags = np.array([18.1, 18.2, 22.1, 22.1, 22.5, 22.5, 22.5, 25.0])
    rec = np.array([True, True, True, True, True, False, False, False])
    # bins of 0.4 mag from 18: 22.1 is in [22.0, 22.4) all recovered; 22.5 in [22.4, 22.8): 1/3
    assert np.isclose(depth_at_half_recovered(mags, rec), 22.6)
    assert np.isnan(depth_at_half_recovered(mags[:4], rec[:4]))
    assert np.isnan(depth_at_half_recovered(np.array([np.nan]), np.array([False])))


def test_summarise_brick_by_hand():
    n = 4
    columns = {
        "unique_id": np.array([b"a", b"b", b"c", b"d"]),
        "obiwan_mask": np.array([1, 3, 0, 1], np.uint8),
        "targets_mask": np.array([(1 << 5) | (1 << 2), 1 << 5, 1 << 5, 1 << 2], np.uint8),
        "tractor_type": np.array([b"REX ", b"PSF ", b"", b"REX "]),
        "tractor_ebv": np.array([0.01, 0.03, np.nan, 0.02], np.float32),
        "tractor_psfdepth_g": np.array([100.0, 400.0, np.nan, 0.0], np.float32),
    }
    for band in "grz":
        columns[f"{band}flux"] = np.full(n, 1.0, np.float32)
        columns[f"mw_transmission_{band}"] = np.ones(n, np.float32)
        columns[f"tractor_psfsize_{band}"] = np.array([1.0, 1.2, np.nan, 1.4], np.float32)
    bounds = (10.125, 0.0, 10.0, 10.25, -0.125, 0.125)
    columns["tractor_mw_transmission_g"] = np.array([0.9, 0.8, np.nan, 0.7], np.float32)
    columns["tractor_nobs_g"] = np.array([3, 20, 0, 4], np.int16)
    row = summarise_brick("0101p000", columns, bounds, nobjs=57)
    assert set(row) == set(SUMMARY_COLUMNS)
    assert row["n_inj"] == 4 and row["n_rec"] == 3 and np.isclose(row["frac_recovered"], 0.75)
    assert row["n_true_desi_elg"] == 3 and row["n_true_rec_meas_desi_elg"] == 1
    assert row["n_type_rex"] == 2 and row["n_type_psf"] == 1 and row["n_type_exp"] == 0
    assert np.isclose(row["ebv"], 0.02, atol=1e-7)
    assert np.isclose(row["psfsize_r"], 1.2, atol=1e-6)
    # median of the positive ivars of recovered sources (100, 400) = 250
    assert np.isclose(row["psfdepth_g"], ivar_to_depth(250.0))
    assert np.isnan(row["galdepth_g"])  # no galdepth column at all
    assert np.isclose(row["brick_area"], brick_area(10.0, 10.25, -0.125, 0.125))
    # the new parity columns: medians and histogram over the 3 recovered rows only
    assert row["nobjs"] == 57
    assert np.isclose(row["trans_g"], 0.8, atol=1e-6)
    assert np.isclose(row["ext_g"], -2.5 * np.log10(0.8), atol=1e-6)
    assert np.isnan(row["trans_r"]) and np.isnan(row["ext_r"]) and np.isnan(row["nexp_r"])
    assert row["nexp_g"] == 4.0
    expected = np.zeros(16, np.int64)
    expected[[3, 4, 15]] = 1  # nobs 20 goes to the last bin (>= 15)
    assert np.array_equal(row["nexphist_g"], expected)
    assert np.array_equal(row["nexphist_r"], np.zeros(16, np.int64))


def test_nobs_histogram_bins():
    hist = nobs_histogram(np.array([0, 0, 1, 14, 15, 16, 200, -1], np.int16))
    assert hist.shape == (16,) and hist.dtype == np.int64
    assert list(hist) == [3, 1] + [0] * 12 + [1, 3]


def test_nexp_of_dr3_arrays():
    # DR3 schema: decam_nobs over ugrizY, g=1, r=2, z=4
    nobs = np.zeros((3, 6), np.uint8)
    nobs[:, 1] = [2, 4, 9]
    nobs[:, 4] = [1, 1, 1]
    columns = {"unique_id": np.array([b"a", b"b", b"c"]), "obiwan_mask": np.array([1, 1, 0], np.uint8),
               "targets_mask": np.zeros(3, np.uint8), "tractor_decam_nobs": nobs}
    for band in "grz":
        columns[f"{band}flux"] = np.ones(3, np.float32)
        columns[f"mw_transmission_{band}"] = np.ones(3, np.float32)
    row = summarise_brick("0101p000", columns, (0, 0, 0, 1, 0, 1), nobjs=0)
    assert row["nexp_g"] == 3.0 and row["nexp_z"] == 1.0
    assert list(row["nexphist_g"][:5]) == [0, 0, 1, 0, 1]


def test_empty_summary_shapes():
    row = empty_summary("0101p000", None)
    assert set(row) == set(SUMMARY_COLUMNS)
    assert row["nobjs"] == 0 and np.isnan(row["trans_g"]) and np.isnan(row["nexp_z"])
    assert row["nexphist_g"].shape == (16,) and not row["nexphist_g"].any()


def test_depth_at_half_recovered_bins_are_low_inclusive_in_float64():
    """docs/migration.md: bins are [low, high) on float64 magnitudes (the old code used
    (low, high] on float32 ones), the last bin also holds 26."""
    from obiwan_h5.core.summary import MAG_BINS

    edge = MAG_BINS[11]                        # 22.4 as the float64 bin edge
    bright = np.full(4, 20.1)
    # two lost sources exactly on the edge: [22.4, 22.8) (centre 22.6); the old (low, high]
    # put them in the bin below (centre 22.2)
    mags = np.concatenate([bright, [edge, edge]])
    rec = np.array([True] * 4 + [False, False])
    assert depth_at_half_recovered(mags, rec) == 0.5 * (MAG_BINS[11] + MAG_BINS[12])
    # one float64 step below the edge is in the bin below
    below = np.concatenate([bright, [np.nextafter(edge, 0)] * 2])
    assert depth_at_half_recovered(below, rec) == 0.5 * (MAG_BINS[10] + MAG_BINS[11])
    # 26 itself belongs to the last bin
    assert depth_at_half_recovered(np.array([26.0]), np.array([False])) == 0.5 * (MAG_BINS[-2] + MAG_BINS[-1])


def test_depth_at_half_recovered_nan_when_no_bin_falls_to_half_and_the_last_is_empty():
    """docs/migration.md: the old code returned the last bin's centre, 25.8, here."""
    mags = np.array([18.1, 20.5, 23.0, 25.0])
    assert np.isnan(depth_at_half_recovered(mags, np.ones(4, bool)))


# ------------------------------------------------------------------ bin edges, exactly
# Every edge of the magnitude bins, and one float64 step either side of it, must fall in
# the bin `numpy.histogram` puts it in with the same edges (the docstring's promise); the
# bin whose recovered fraction is exactly 0.5 is the one reported (<= 0.5).

def _histogram_bin(mag, bins):
    """The bin `numpy.histogram` counts `mag` in, or None."""
    counts, _ = np.histogram([mag], bins=bins)
    return int(np.argmax(counts)) if counts.any() else None


def test_depth_at_half_recovered_puts_every_edge_where_numpy_histogram_does():
    from obiwan_h5.core.summary import MAG_BINS

    mags = [m for edge in MAG_BINS for m in (np.nextafter(edge, -np.inf), edge, np.nextafter(edge, np.inf))]
    sides = []
    for mag in mags:
        expected = _histogram_bin(mag, MAG_BINS)
        got = depth_at_half_recovered(np.array([mag]), np.array([False]))
        if expected is None:
            assert np.isnan(got), mag
        else:
            assert got == 0.5 * (MAG_BINS[expected] + MAG_BINS[expected + 1]), (mag, expected, got)
        sides.append(expected)
    # the inputs exercise both sides of every edge: below, on and above the first and last
    assert sides[:3] == [None, 0, 0] and sides[-3:] == [19, 19, None]
    assert sides[3:6] == [0, 1, 1]


def test_depth_at_half_recovered_takes_a_fraction_of_exactly_one_half():
    from obiwan_h5.core.summary import MAG_BINS

    edge = MAG_BINS[8]
    # two bright bins all recovered, then [edge, next edge): 1 of 2 recovered, then 0 of 1
    mags = np.array([18.1, 18.5, edge, np.nextafter(MAG_BINS[9], 0), MAG_BINS[9]])
    recovered = np.array([True, True, True, False, False])
    assert depth_at_half_recovered(mags, recovered) == 0.5 * (MAG_BINS[8] + MAG_BINS[9])
    # one more recovered source in that bin: 2 of 3 > 0.5, so the next bin
    mags, recovered = np.append(mags, edge), np.append(recovered, True)
    assert depth_at_half_recovered(mags, recovered) == 0.5 * (MAG_BINS[9] + MAG_BINS[10])


def test_nobs_histogram_agrees_with_numpy_histogram_on_every_value():
    nobs = np.arange(-3, 40, dtype=np.int16)
    # values 0..14 each their own bin, >= 15 the last; negative count as 0
    edges = np.append(np.arange(16), np.inf)
    expected, _ = np.histogram(np.maximum(nobs, 0), bins=edges)
    assert nobs_histogram(nobs).tolist() == expected.tolist()
    for value in nobs:
        assert nobs_histogram(np.array([value])).tolist() == np.histogram(max(value, 0), bins=edges)[0].tolist()
    # the summary's nexphist, of recovered rows only: the same bins
    n = len(nobs)
    columns = {"unique_id": np.arange(n).astype("S4"), "obiwan_mask": np.ones(n, np.uint8),
               "targets_mask": np.zeros(n, np.uint8), "tractor_nobs_g": nobs}
    for band in "grz":
        columns[f"{band}flux"] = np.ones(n, np.float32)
        columns[f"mw_transmission_{band}"] = np.ones(n, np.float32)
    row = summarise_brick("0101p000", columns, (0, 0, 0, 1, 0, 1), nobjs=0)
    assert row["nexphist_g"].tolist() == expected.tolist()
