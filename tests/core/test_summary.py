"""Per-brick summary rows against hand computation."""

import numpy as np

from obiwan_h5.core.summary import brick_area, depth_at_half_recovered, ivar_to_depth, summarise_brick
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
    row = summarise_brick("0101p000", columns, bounds)
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
