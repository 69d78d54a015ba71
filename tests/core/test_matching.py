"""Tests of obiwan_h5.matching against an all-pairs haversine brute force."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obiwan_h5.core.matching import has_neighbour, match_nearest, radec_to_unit

ARCSEC = 1.0 / 3600.0


def haversine_arcsec(ra1, dec1, ra2, dec2):
    """Great-circle separation in arcsec, broadcasting; accurate at small angles."""
    ra1, dec1, ra2, dec2 = (np.deg2rad(np.asarray(a, dtype=float)) for a in (ra1, dec1, ra2, dec2))
    h = (np.sin((dec2 - dec1) / 2) ** 2
         + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2)
    return np.rad2deg(2 * np.arcsin(np.sqrt(np.clip(h, 0, 1)))) * 3600


def offset(ra, dec, sep_arcsec, pa_rad):
    """The point at `sep_arcsec` and position angle `pa_rad` from (ra, dec), exactly."""
    ra, dec = np.deg2rad(ra), np.deg2rad(dec)
    d = np.deg2rad(np.asarray(sep_arcsec) * ARCSEC)
    dec2 = np.arcsin(np.sin(dec) * np.cos(d) + np.cos(dec) * np.sin(d) * np.cos(pa_rad))
    ra2 = ra + np.arctan2(np.sin(pa_rad) * np.sin(d) * np.cos(dec),
                          np.cos(d) - np.sin(dec) * np.sin(dec2))
    return np.rad2deg(ra2) % 360.0, np.rad2deg(dec2)


def brute_force(ra1, dec1, ra2, dec2, radius):
    sep = haversine_arcsec(ra1[:, None], dec1[:, None], ra2[None, :], dec2[None, :])
    best = sep.min(axis=1)
    return sep, best, best <= radius


# Patch centres: generic, on RA = 0/360, on each pole, just off RA = 360.
CENTRES = [(150.0, 2.0), (0.0, 0.0), (0.0, 90.0), (200.0, -90.0), (359.9999, -30.0),
           (10.0, 89.9999)]


def random_catalogs(rng, centre, n2=300, n_near=200, n_rand=100, patch_arcsec=15.0):
    """Catalog 2 scattered in a patch (mean spacing ~1"), catalog 1 placed at
    0.5"-1.5" from random members of catalog 2 plus uniform points in the patch."""
    ra0, dec0 = centre
    r = patch_arcsec * np.sqrt(rng.random(n2))
    ra2, dec2 = offset(ra0, dec0, r, rng.uniform(0, 2 * np.pi, n2))
    host = rng.integers(0, n2, n_near)
    ra_near, dec_near = offset(ra2[host], dec2[host], rng.uniform(0.5, 1.5, n_near),
                               rng.uniform(0, 2 * np.pi, n_near))
    r = patch_arcsec * np.sqrt(rng.random(n_rand))
    ra_rand, dec_rand = offset(ra0, dec0, r, rng.uniform(0, 2 * np.pi, n_rand))
    return (np.concatenate([ra_near, ra_rand]), np.concatenate([dec_near, dec_rand]),
            ra2, dec2)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("centre", CENTRES, ids=[f"{c[0]}_{c[1]}" for c in CENTRES])
def test_match_nearest_against_brute_force(centre, seed):
    rng = np.random.default_rng(seed)
    ra1, dec1, ra2, dec2 = random_catalogs(rng, centre)
    radius = 1.0
    idx, sep = match_nearest(ra1, dec1, ra2, dec2, radius)
    assert idx.dtype == np.int64 and sep.dtype == np.float64
    assert idx.shape == sep.shape == ra1.shape

    all_sep, best, expect = brute_force(ra1, dec1, ra2, dec2, radius)
    # rows within rounding of the radius could go either way
    clear = np.abs(best - radius) > 1e-7
    assert clear.sum() > 0.99 * len(ra1)
    np.testing.assert_array_equal((idx >= 0)[clear], expect[clear])
    # the inputs exercise both outcomes, and catalog 2 sources shared by several
    assert 0.2 < expect.mean() < 0.9
    got = idx >= 0
    assert len(np.unique(idx[got])) < got.sum()

    # the returned source is a nearest one (ties allowed) and its separation is exact
    np.testing.assert_allclose(sep[got], best[got], rtol=0, atol=1e-8)
    np.testing.assert_allclose(all_sep[np.flatnonzero(got), idx[got]], best[got],
                               rtol=0, atol=1e-8)
    assert (sep[got] <= radius).all()
    assert np.isnan(sep[~got]).all()
    np.testing.assert_array_equal(idx[~got], -1)

    near = has_neighbour(ra1, dec1, ra2, dec2, radius)
    assert near.dtype == bool
    np.testing.assert_array_equal(near[clear], expect[clear])


def test_larger_radius_against_brute_force():
    rng = np.random.default_rng(7)
    ra1, dec1, ra2, dec2 = random_catalogs(rng, (0.0, 0.0), n2=60, patch_arcsec=200.0)
    idx, sep = match_nearest(ra1, dec1, ra2, dec2, 20.0)
    all_sep, best, expect = brute_force(ra1, dec1, ra2, dec2, 20.0)
    assert 0 < expect.sum() < len(ra1)
    np.testing.assert_array_equal(idx >= 0, expect)
    np.testing.assert_allclose(sep[expect], best[expect], rtol=0, atol=1e-8)


def test_whole_sky_degree_radius_against_brute_force():
    # at degree scales the chord and the arc differ, so this checks the conversion
    rng = np.random.default_rng(11)
    def sky(n):
        return rng.uniform(0, 360, n), np.rad2deg(np.arcsin(rng.uniform(-1, 1, n)))
    ra1, dec1 = sky(300)
    ra2, dec2 = sky(40)
    radius = 15 * 3600.0
    idx, sep = match_nearest(ra1, dec1, ra2, dec2, radius)
    _, best, expect = brute_force(ra1, dec1, ra2, dec2, radius)
    assert 0.2 < expect.mean() < 0.95
    np.testing.assert_array_equal(idx >= 0, expect)
    np.testing.assert_allclose(sep[expect], best[expect], rtol=1e-9)


def test_ra_wrap():
    ra2 = np.array([0.0001, 180.0])
    dec2 = np.array([0.0, 0.0])
    ra1 = np.array([359.99995, 360.0, -0.0001, 359.9])
    dec1 = np.zeros(4)
    idx, sep = match_nearest(ra1, dec1, ra2, dec2, 1.0)
    assert idx.tolist() == [0, 0, 0, -1]
    np.testing.assert_allclose(sep[:3], [0.54, 0.36, 0.72], rtol=1e-9)
    assert np.isnan(sep[3])
    idx, _ = match_nearest(ra1, dec1, ra2, dec2, 0.5)
    assert idx.tolist() == [-1, 0, -1, -1]


def test_poles():
    # on a pole RA is meaningless; across a pole RA differs by 180 deg
    ra2 = np.array([0.0, 0.0])
    dec2 = np.array([90.0, -89.9999])
    ra1 = np.array([123.0, 180.0, 45.0, 0.0])
    dec1 = np.array([90 - 0.5 * ARCSEC, -89.9999, 90.0, 89.9995])
    idx, sep = match_nearest(ra1, dec1, ra2, dec2, 1.0)
    assert idx.tolist() == [0, 1, 0, -1]
    np.testing.assert_allclose(sep[:3], [0.5, 0.72, 0.0], atol=1e-7)


def test_boundary_of_radius():
    ra2, dec2 = np.array([10.0]), np.array([-5.0])
    ra1 = np.array([10.0, 10.0])
    dec1 = np.array([-5.0 + 0.999999 * ARCSEC, -5.0 - 1.000001 * ARCSEC])
    idx, sep = match_nearest(ra1, dec1, ra2, dec2, 1.0)
    assert idx.tolist() == [0, -1]
    np.testing.assert_allclose(sep[0], 0.999999, rtol=1e-9)


def test_nearest_of_several_and_shared():
    ra2 = np.array([20.0, 20.0, 20.0])
    dec2 = np.array([0.0, 0.6 * ARCSEC, -0.9 * ARCSEC])
    ra1 = np.array([20.0, 20.0, 20.0])
    dec1 = np.array([0.2 * ARCSEC, 0.4 * ARCSEC, 0.25 * ARCSEC])
    idx, sep = match_nearest(ra1, dec1, ra2, dec2, 1.0)
    assert idx.tolist() == [0, 1, 0]
    np.testing.assert_allclose(sep, [0.2, 0.2, 0.25], rtol=1e-8)


def test_empty_catalogs():
    e = np.array([])
    idx, sep = match_nearest(e, e, np.array([1.0]), np.array([1.0]), 1.0)
    assert idx.shape == (0,) and sep.shape == (0,) and idx.dtype == np.int64
    idx, sep = match_nearest(np.array([1.0, 2.0]), np.array([1.0, 2.0]), e, e, 1.0)
    assert idx.tolist() == [-1, -1] and np.isnan(sep).all()
    idx, sep = match_nearest(e, e, e, e, 1.0)
    assert idx.shape == (0,)
    assert has_neighbour(np.array([1.0]), np.array([1.0]), e, e, 1.0).tolist() == [False]
    assert has_neighbour(e, e, e, e, 1.0).shape == (0,)


def test_nan_coordinates():
    ra1 = np.array([30.0, np.nan, 30.0, 31.0])
    dec1 = np.array([1.0, 1.0, np.nan, 1.0])
    # NaN rows of catalog 2 sit where they would otherwise be the nearest
    ra2 = np.array([30.0, np.nan, 30.0, 31.0, np.inf])
    dec2 = np.array([np.nan, 1.0, 1.0 + 0.5 * ARCSEC, 1.0 + 0.1 * ARCSEC, 1.0])
    idx, sep = match_nearest(ra1, dec1, ra2, dec2, 1.0)
    assert idx.tolist() == [2, -1, -1, 3]
    np.testing.assert_allclose(sep[[0, 3]], [0.5, 0.1], rtol=1e-8)
    assert np.isnan(sep[[1, 2]]).all()
    # all of catalog 2 invalid, and all of catalog 1 invalid
    idx, _ = match_nearest(ra1, dec1, np.array([np.nan]), np.array([np.nan]), 1.0)
    assert idx.tolist() == [-1] * 4
    idx, _ = match_nearest(np.array([np.nan]), np.array([np.nan]), ra2, dec2, 1.0)
    assert idx.tolist() == [-1]
    assert has_neighbour(ra1, dec1, ra2, dec2, 1.0).tolist() == [True, False, False, True]


def test_big_endian_and_lists():
    ra2 = np.array([40.0, 40.0], dtype=">f8")
    dec2 = np.array([5.0, 5.0 + 3 * ARCSEC], dtype=">f8")
    idx, _ = match_nearest([40.0, 40.0], [5.0 + 2.5 * ARCSEC, 7.0], ra2, dec2, 1.0)
    assert idx.tolist() == [1, -1]


def test_bad_arguments():
    one = np.array([1.0])
    for radius in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError):
            match_nearest(one, one, one, one, radius)
    with pytest.raises(ValueError):
        match_nearest(np.array([1.0, 2.0]), one, one, one, 1.0)
    with pytest.raises(ValueError):
        match_nearest(one, one, one, np.array([1.0, 2.0]), 1.0)


def test_radec_to_unit():
    v = radec_to_unit([0.0, 90.0, 17.0, 250.0, 0.0], [0.0, 0.0, 90.0, -90.0, 45.0])
    assert v.shape == (5, 3) and v.dtype == np.float64
    np.testing.assert_allclose(v[:4], [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, -1]],
                               atol=1e-15)
    np.testing.assert_allclose(v[4], [np.sqrt(0.5), 0, np.sqrt(0.5)], atol=1e-15)
    rng = np.random.default_rng(5)
    w = radec_to_unit(rng.uniform(-360, 720, 100), rng.uniform(-90, 90, 100))
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, rtol=1e-14)
    assert radec_to_unit([], []).shape == (0, 3)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.floats(0.0, 360.0, allow_nan=False, exclude_max=True),
    st.floats(-89.9, 89.9, allow_nan=False),
    st.integers(0, 40), st.integers(0, 40), st.floats(0.2, 5.0),
)
def test_property_nearest_match_equals_brute_force(seed, ra0, dec0, n1, n2, radius):
    """Any small pair of catalogs anywhere on the sky: same matched set as all-pairs search,
    and each match is a nearest source (ties may pick either)."""
    rng = np.random.default_rng(seed)
    spread = 3 * radius / 3600.0
    ra1 = (ra0 + rng.uniform(-spread, spread, n1) / np.cos(np.radians(dec0))) % 360
    dec1 = np.clip(dec0 + rng.uniform(-spread, spread, n1), -90, 90)
    ra2 = (ra0 + rng.uniform(-spread, spread, n2) / np.cos(np.radians(dec0))) % 360
    dec2 = np.clip(dec0 + rng.uniform(-spread, spread, n2), -90, 90)
    index, separation = match_nearest(ra1, dec1, ra2, dec2, radius)
    for i in range(n1):
        seps = haversine_arcsec(ra1[i], dec1[i], ra2, dec2) if n2 else np.zeros(0)
        # a source within a hair of the radius may go either way (rounding)
        if not np.any(seps <= radius * (1 + 1e-9)):
            assert index[i] == -1
        if np.any(seps < radius * (1 - 1e-9)):
            assert index[i] >= 0 and np.isclose(seps[index[i]], seps.min(), rtol=0, atol=1e-6)
            assert np.isclose(separation[i], seps[index[i]], rtol=0, atol=1e-6)


# ------------------------------------------------------------ the radius is inclusive, exactly
# The separation `match_nearest` reports is the angle it compares with the radius. A source
# whose reported separation is exactly the radius must match, and one float64 step less of
# radius must lose it: pairs in every direction (due north and south, where the candidate
# window in dec is as tight as the radius, east-west, oblique), over the sky, at several radii.

def _pairs_at_many_angles():
    rng = np.random.default_rng(27)
    cases = []
    for ra, dec in [(229.3, -36.8), (0.0, 0.0), (359.9999, 45.0), (120.0, 89.99), (200.0, -89.99)]:
        for pa in (0.0, np.pi, 0.5 * np.pi, 1.5 * np.pi, 0.25 * np.pi, 2.0):
            for sep in rng.uniform(0.3, 2.0, 4):
                ra1, dec1 = offset(ra, dec, sep, pa)
                cases.append((float(ra1), float(dec1), ra, dec))
    for _ in range(60):  # sources due north or south, where the dec window is the limit
        ra, dec, sep = rng.uniform(0, 360), rng.uniform(-80, 80), rng.uniform(0.5, 2.0)
        cases.append((ra, dec + rng.choice([-1, 1]) * sep * ARCSEC, ra, dec))
    return cases


def test_a_source_at_exactly_the_radius_matches_and_one_step_less_loses_it():
    for ra1, dec1, ra2, dec2 in _pairs_at_many_angles():
        one = ([ra1], [dec1], [ra2], [dec2])
        _, wide = match_nearest(*one, 10.0)
        radius = wide[0]      # the code's own angle arithmetic: the separation it reports
        assert 0.29 < radius < 2.01
        index, separation = match_nearest(*one, radius)
        assert index.tolist() == [0] and separation[0] == radius, (one, radius)
        assert has_neighbour(*one, radius).tolist() == [True], (one, radius)
        below = np.nextafter(radius, 0.0)
        index, separation = match_nearest(*one, below)
        assert index.tolist() == [-1] and np.isnan(separation[0]), (one, radius)
        assert has_neighbour(*one, below).tolist() == [False], (one, radius)
        assert match_nearest(*one, np.nextafter(radius, np.inf))[0].tolist() == [0]


@settings(max_examples=120, deadline=None)
@given(st.integers(0, 2**32 - 1), st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), min_size=1, max_size=7),
       st.floats(0.3, 3.0), st.booleans())
def test_property_grouped_match_equals_one_call_per_group(seed, sizes, radius, same_place):
    """Many groups (the pieces of a write round) matched in one call: exactly, index for
    index and separation for separation, what one call per group gives, ties and sources
    at the same place in other groups included."""
    rng = np.random.default_rng(seed)
    ra1, dec1, ra2, dec2, group1, group2 = [], [], [], [], [], []
    for number, (n1, n2) in enumerate(sizes):
        ra0, dec0 = (150.0, 2.0) if same_place else (rng.uniform(0, 360), rng.uniform(-89, 89))
        spread = 3 * radius / 3600.0
        ra2.append(ra0 + rng.uniform(-spread, spread, n2))
        dec2.append(dec0 + rng.uniform(-spread, spread, n2))
        if n2 > 2:
            ra2[-1][1], dec2[-1][1] = ra2[-1][2], dec2[-1][2]  # an exact tie
            dec2[-1][0] = np.nan  # never matched
        ra1.append(ra0 + rng.uniform(-spread, spread, n1))
        dec1.append(dec0 + rng.uniform(-spread, spread, n1))
        group1.append(np.full(n1, number))
        group2.append(np.full(n2, number))
    index, separation = match_nearest(np.concatenate(ra1), np.concatenate(dec1), np.concatenate(ra2),
                                      np.concatenate(dec2), radius, np.concatenate(group1), np.concatenate(group2))
    offsets = np.cumsum([0] + [len(part) for part in ra2])
    start = 0
    for number in range(len(sizes)):
        alone, apart = match_nearest(ra1[number], dec1[number], ra2[number], dec2[number], radius)
        stop = start + len(ra1[number])
        assert np.array_equal(index[start:stop], np.where(alone >= 0, alone + offsets[number], -1))
        assert np.array_equal(separation[start:stop], apart, equal_nan=True)
        start = stop
    assert np.array_equal(has_neighbour(np.concatenate(ra1), np.concatenate(dec1), np.concatenate(ra2),
                                        np.concatenate(dec2), radius, np.concatenate(group1), np.concatenate(group2)),
                          index >= 0)


def test_groups_must_come_in_pairs_and_be_non_negative():
    one = np.array([1.0])
    with pytest.raises(ValueError, match="both"):
        match_nearest(one, one, one, one, 1.0, group1=[0])
    with pytest.raises(ValueError, match="non-negative"):
        match_nearest(one, one, one, one, 1.0, [-1], [0])
