"""Tests of obiwan_h5.selection: every cut, its boundaries, bad fluxes and the bitmask."""

import json
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from obiwan_h5.core import selection as sel
from obiwan_h5.fileformat import mask_bits_attributes

EPS = 1e-6  # mag; far above round-off of mag -> flux -> mag, far below any cut width


def mag_to_flux(m):
    return 10 ** ((22.5 - np.asarray(m, dtype=float)) / 2.5)


def fluxes_from_colours(g, gr, rz):
    """g, r, z fluxes of a source with magnitude g and colours g-r, r-z."""
    g = np.asarray(g, dtype=float)
    r = g - gr
    z = r - rz
    return mag_to_flux(g), mag_to_flux(r), mag_to_flux(z)


# every test runs as under warnings.simplefilter("error"): a numpy RuntimeWarning from
# NaN, zero or negative fluxes fails it
pytestmark = pytest.mark.filterwarnings("error")


# --------------------------------------------------------------------------- flux_to_mag

def test_flux_to_mag_values_and_bad_fluxes():
    flux = np.array([1.0, 10.0, 0.0, -3.0, np.nan, np.inf, -np.inf])
    mag = sel.flux_to_mag(flux)
    np.testing.assert_allclose(mag[:2], [22.5, 20.0])
    assert np.isnan(mag[2:]).all()
    assert mag.dtype == np.float64


def test_flux_to_mag_big_endian_and_scalar():
    assert sel.flux_to_mag(np.array([100.0], dtype=">f8"))[0] == pytest.approx(17.5)
    assert float(sel.flux_to_mag(1.0)) == pytest.approx(22.5)
    assert np.isnan(sel.flux_to_mag(0.0))


# --------------------------------------------------------------------------- DESI ELG

# (name, g-r, r-z, r mag of a point ON the boundary, coordinate moved, +1 if increasing
# that coordinate leaves the selection)
DESI_BOUNDARIES = [
    ("r < 23.4", 0.3, 0.8, 23.4, "r", +1),
    ("r-z > 0.3", 0.0, 0.3, 23.0, "rz", -1),
    ("r-z < 1.6", -0.5, 1.6, 23.0, "rz", +1),
    ("g-r < 1.15(r-z)-0.15", 1.15 * 0.5 - 0.15, 0.5, 23.0, "gr", +1),
    ("g-r < 1.6-1.2(r-z)", 1.6 - 1.2 * 1.0, 1.0, 23.0, "gr", +1),
]


def _desi_point(gr, rz, r):
    return fluxes_from_colours(r + gr, gr, rz)


@pytest.mark.parametrize("name,gr,rz,r,coord,out_dir", DESI_BOUNDARIES,
                         ids=[b[0] for b in DESI_BOUNDARIES])
def test_desi_elg_boundaries(name, gr, rz, r, coord, out_dir):
    params = {"gr": gr, "rz": rz, "r": r}
    inside = dict(params)
    outside = dict(params)
    inside[coord] -= out_dir * EPS
    outside[coord] += out_dir * EPS
    far_inside = dict(params)
    far_inside[coord] -= out_dir * 0.05
    got = sel.desi_elg(*[np.array([a, b, c]) for a, b, c in zip(
        _desi_point(**inside), _desi_point(**outside), _desi_point(**far_inside))])
    assert got.tolist() == [True, False, True]


def test_desi_elg_linear_flux_boundaries_are_strict():
    # points exactly on the r, r-z > 0.3 and r-z < 1.6 boundaries of the flux form, built
    # with the same expressions; colours are well inside the other cuts
    r_lim = 10 ** ((22.5 - 23.4) / 2.5)
    r = np.array([r_lim, 1.0, 1.0])
    z = np.array([r_lim * 10 ** (1.0 / 2.5), 10 ** (0.3 / 2.5), 10 ** (1.6 / 2.5)])
    g = r * 10 ** (np.array([-0.2, 0.0, 0.5]) / 2.5)  # g-r = 0.2, 0.0, -0.5
    assert sel.desi_elg(g, r, z).tolist() == [False, False, False]
    r_in = r * np.array([1 + 1e-9, 1, 1])
    z_in = z * np.array([1 + 1e-9, 1 + 1e-9, 1 - 1e-9])
    assert sel.desi_elg(g, r_in, z_in).tolist() == [True, True, True]


def test_desi_elg_primary():
    g, r, z = fluxes_from_colours([23.3, 23.3], 0.3, 0.8)
    assert sel.desi_elg(g, r, z).tolist() == [True, True]
    assert sel.desi_elg(g, r, z, primary=np.array([True, False])).tolist() == [True, False]


@pytest.mark.parametrize("band", [0, 1, 2])
@pytest.mark.parametrize("bad", [0.0, -1.0, -1e-30, np.nan, np.inf, -np.inf])
def test_desi_elg_bad_flux_not_selected(band, bad):
    fluxes = [np.array([f, f]) for f in fluxes_from_colours(23.3, 0.3, 0.8)]
    fluxes[band][1] = bad
    assert sel.desi_elg(*fluxes).tolist() == [True, False]


def desi_mag_form(g, r, z):
    gr, rz = g - r, r - z
    return (r < 23.4) & (rz > 0.3) & (rz < 1.6) & (gr < 1.15 * rz - 0.15) & (gr < 1.6 - 1.2 * rz)


def desi_margin(g, r, z):
    """Distance (mag) to the nearest boundary of the magnitude form."""
    gr, rz = g - r, r - z
    return min(abs(r - 23.4), abs(rz - 0.3), abs(rz - 1.6),
               abs(gr - 1.15 * rz + 0.15), abs(gr - 1.6 + 1.2 * rz))


@settings(max_examples=300, deadline=None)
@given(r=st.floats(21.0, 24.0), gr=st.floats(-0.6, 1.5), rz=st.floats(-0.2, 2.0))
def test_desi_flux_form_agrees_with_mag_form(r, gr, rz):
    g, z = r + gr, r - rz
    assume(desi_margin(g, r, z) > 1e-9)
    got = sel.desi_elg(*fluxes_from_colours(g, gr, rz))
    assert bool(got) == bool(desi_mag_form(g, r, z))


def test_desi_mag_form_region_is_exercised():
    # guards the property test above against a search box that never selects anything
    rng = np.random.default_rng(1)
    r = rng.uniform(21, 24, 2000)
    gr = rng.uniform(-0.6, 1.5, 2000)
    rz = rng.uniform(-0.2, 2.0, 2000)
    got = sel.desi_elg(*fluxes_from_colours(r + gr, gr, rz))
    expect = desi_mag_form(r + gr, r, r - rz)
    assert 50 < expect.sum() < 1950
    np.testing.assert_array_equal(got, expect)


# --------------------------------------------------------------------------- eBOSS ELG

def ngc_gr_low(rz):
    return -0.068 * rz + 0.457


def ngc_gr_high(rz):
    return 0.112 * rz + 0.773


def rz_high(gr):
    return -0.555 * gr + 1.901


RZ_LOW = {"ngc": lambda gr: 0.637 * gr + 0.399, "sgc": lambda gr: 0.218 * gr + 0.571}
G_HIGH = {"ngc": 22.9, "sgc": 22.825}


def eboss_boundaries(region):
    # (name, g, gr, rz with the moved coordinate ON its boundary, coordinate, out_dir);
    # the other coordinates are chosen well inside every other cut
    return [
        ("g > 21.825", 21.825, 0.6, 1.2, "g", -1),
        ("g < g_high", G_HIGH[region], 0.6, 1.2, "g", +1),
        ("gr > low(rz)", 22.4, ngc_gr_low(1.2), 1.2, "gr", -1),
        ("gr < high(rz)", 22.4, ngc_gr_high(1.2), 1.2, "gr", +1),
        ("rz > low(gr)", 22.4, 0.6, RZ_LOW[region](0.6), "rz", -1),
        ("rz < high(gr)", 22.4, 0.6, rz_high(0.6), "rz", +1),
    ]


EBOSS_CASES = [(region,) + b for region in ("ngc", "sgc") for b in eboss_boundaries(region)]


@pytest.mark.parametrize("region,name,g,gr,rz,coord,out_dir", EBOSS_CASES,
                         ids=[f"{c[0]}:{c[1]}" for c in EBOSS_CASES])
def test_eboss_elg_boundaries(region, name, g, gr, rz, coord, out_dir):
    params = {"g": g, "gr": gr, "rz": rz}
    pts = []
    for shift in (-out_dir * EPS, out_dir * EPS, -out_dir * 0.02):
        p = dict(params)
        p[coord] += shift
        pts.append(fluxes_from_colours(p["g"], p["gr"], p["rz"]))
    got = sel.eboss_elg(*[np.array(c) for c in zip(*pts)], region=region)
    assert got.tolist() == [True, False, True]


def test_eboss_caps_differ():
    # g between the two upper limits: NGC only
    f = fluxes_from_colours(22.86, 0.6, 1.2)
    assert sel.eboss_elg(*f, "ngc") and not sel.eboss_elg(*f, "sgc")
    # rz between the two lower limits at gr=0.6 (NGC 0.7812, SGC 0.7018): SGC only
    f = fluxes_from_colours(22.4, 0.6, 0.74)
    assert sel.eboss_elg(*f, "sgc") and not sel.eboss_elg(*f, "ngc")
    assert sel.eboss_elg(*f, "SGC")


def test_eboss_unknown_region():
    with pytest.raises(ValueError, match="region must be 'ngc' or 'sgc', got 'south'"):
        sel.eboss_elg(1.0, 1.0, 1.0, "south")
    with pytest.raises(ValueError, match="region must be 'ngc' or 'sgc', got 'north'"):
        sel.eboss_quality("north", 100.0, 100.0, 100.0)


@pytest.mark.parametrize("region", ["ngc", "sgc"])
@pytest.mark.parametrize("band", [0, 1, 2])
@pytest.mark.parametrize("bad", [0.0, -2.0, np.nan, np.inf])
def test_eboss_bad_flux_not_selected(region, band, bad):
    fluxes = [np.array([f, f]) for f in fluxes_from_colours(22.4, 0.5, 0.8)]
    fluxes[band][1] = bad
    assert sel.eboss_elg(*fluxes, region).tolist() == [True, False]


# --------------------------------------------------------------------------- eBOSS quality

@pytest.mark.parametrize("region,zlim", [("ngc", 11.0), ("sgc", 12.75)])
@pytest.mark.parametrize("band,lim", [(0, 62.79716079), (1, 30.05661087), (2, None)])
def test_eboss_quality_depth_boundaries(region, zlim, band, lim):
    lim = zlim if lim is None else lim
    depth = [np.full(4, 1e4) for _ in range(3)]
    depth[band][:] = [lim * (1 + 1e-9), lim, lim * (1 - 1e-9), np.nan]
    assert sel.eboss_quality(region, *depth).tolist() == [True, False, False, False]


def test_eboss_quality_z_depth_differs_between_caps():
    d = (np.array([100.0]), np.array([100.0]), np.array([12.0]))
    assert sel.eboss_quality("ngc", *d).tolist() == [True]
    assert sel.eboss_quality("sgc", *d).tolist() == [False]


def test_eboss_quality_masks():
    n = 5
    depth = [np.full(n, 1e3)] * 3
    mg = np.array([0, 1, 0, 0, 0], dtype=np.int16)
    mr = np.array([0, 0, 4, 0, 0], dtype=np.int16)
    mz = np.array([0, 0, 0, 2048, 0], dtype=np.int16)
    assert sel.eboss_quality("ngc", *depth).all()  # no masks given: no mask cut
    got = sel.eboss_quality("ngc", *depth, mask_g=mg, mask_r=mr, mask_z=mz)
    assert got.tolist() == [True, False, False, False, True]
    primary = np.array([True, True, True, True, False])
    got = sel.eboss_quality("ngc", *depth, mg, mr, mz, primary=primary)
    assert got.tolist() == [True, False, False, False, False]
    with pytest.raises(ValueError, match="give all three of mask_g, mask_r, mask_z or none of them"):
        sel.eboss_quality("ngc", *depth, mask_g=mg)


# --------------------------------------------------------------------------- targets_mask

# a point inside eBOSS NGC, eBOSS SGC and DESI at once
ALL_PASS = (22.4, 0.5, 0.8)


def _rows(n, g=ALL_PASS[0], gr=ALL_PASS[1], rz=ALL_PASS[2]):
    f = fluxes_from_colours(np.full(n, g), gr, rz)
    return {b: f[i].copy() for i, b in enumerate("grz")}


def _good_depth(n):
    return {b: np.full(n, 1e3) for b in "grz"}


def test_all_pass_point_passes_every_selection():
    f = fluxes_from_colours(*ALL_PASS)
    assert sel.desi_elg(*f) and sel.eboss_elg(*f, "ngc") and sel.eboss_elg(*f, "sgc")


def test_targets_mask_bits():
    n = 6
    true = _rows(n)
    meas = _rows(n)
    matched = np.array([True, False, True, True, True, True])
    depth = _good_depth(n)
    depth["z"][2] = 12.0  # passes NGC depth, fails SGC
    depth["g"][3] = np.nan
    mask = {b: np.zeros(n, dtype=np.int32) for b in "grz"}
    mask["r"][4] = 1
    primary = np.array([True, True, True, True, True, False])
    got = sel.targets_mask(true, meas, matched, depth, mask=mask, primary=primary)
    assert got.dtype == np.uint8
    true_bits = 0b111000
    assert got.tolist() == [
        true_bits | 0b111,   # everything
        true_bits,           # unmatched, although its measured columns would pass
        true_bits | 0b101,   # SGC z depth fails
        true_bits | 0b100,   # NaN depth fails eBOSS, not DESI
        true_bits | 0b100,   # masked fails eBOSS, not DESI
        true_bits,           # not primary fails all measured selections
    ]
    for name, bit in sel.TARGET_BITS.items():
        assert bool(got[0] & (1 << bit)), name


def test_targets_mask_unmatched_never_has_measured_bits():
    rng = np.random.default_rng(3)
    n = 500
    g = rng.uniform(21.5, 23.5, n)
    gr = rng.uniform(-0.2, 1.2, n)
    rz = rng.uniform(0.0, 2.0, n)
    meas = dict(zip("grz", fluxes_from_colours(g, gr, rz)))
    true = dict(zip("grz", fluxes_from_colours(g[::-1], gr[::-1], rz[::-1])))
    matched = rng.random(n) < 0.5
    got = sel.targets_mask(true, meas, matched, _good_depth(n))
    all_matched = sel.targets_mask(true, meas, np.ones(n, bool), _good_depth(n))
    assert (all_matched & 0b111)[~matched].any()  # would be set if matched
    assert not (got & 0b111)[~matched].any()
    np.testing.assert_array_equal(got[matched], all_matched[matched])
    np.testing.assert_array_equal(got & 0b111000, all_matched & 0b111000)


def test_targets_mask_nan_measured_unmatched_rows():
    n = 3
    meas = {b: np.full(n, np.nan) for b in "grz"}
    depth = {b: np.full(n, np.nan) for b in "grz"}
    got = sel.targets_mask(_rows(n), meas, np.zeros(n, bool), depth,
                           mask={b: np.zeros(n, np.int16) for b in "grz"},
                           primary=np.zeros(n, bool))
    assert got.tolist() == [0b111000] * n


def test_true_bits_ignore_depth_mask_primary():
    rng = np.random.default_rng(4)
    n = 400
    g = rng.uniform(21.5, 23.5, n)
    true = dict(zip("grz", fluxes_from_colours(g, rng.uniform(-0.2, 1.2, n),
                                               rng.uniform(0.0, 2.0, n))))
    meas = _rows(n)
    ref = sel.targets_mask(true, meas, np.ones(n, bool), _good_depth(n))
    bad_depth = {b: rng.uniform(0, 20, n) for b in "grz"}
    masks = {b: rng.integers(0, 3, n) for b in "grz"}
    got = sel.targets_mask(true, meas, rng.random(n) < 0.5, bad_depth, mask=masks,
                           primary=rng.random(n) < 0.5)
    assert (ref & 0b111000).any() and (ref & 0b111000 != 0b111000).any()
    np.testing.assert_array_equal(got & 0b111000, ref & 0b111000)
    assert (got & 0b111 != ref & 0b111).any()  # the perturbations did affect measured bits
    # and the true bits are the colour cuts on the true fluxes, bit by bit
    tf = (true["g"], true["r"], true["z"])
    np.testing.assert_array_equal((got >> 3) & 1, sel.eboss_elg(*tf, "ngc"))
    np.testing.assert_array_equal((got >> 4) & 1, sel.eboss_elg(*tf, "sgc"))
    np.testing.assert_array_equal((got >> 5) & 1, sel.desi_elg(*tf))


def test_targets_mask_bad_dict():
    n = 2
    with pytest.raises(ValueError, match="true_flux must be a mapping with keys 'g', 'r', 'z'"):
        sel.targets_mask({"g": np.ones(n), "r": np.ones(n)}, _rows(n), np.ones(n, bool),
                         _good_depth(n))


# --------------------------------------------------------------------------- definitions

def test_bit_constants_and_definitions_serialise():
    assert sel.TARGET_BITS == {"eboss_ngc": 0, "eboss_sgc": 1, "desi_elg": 2,
                               "eboss_ngc_true": 3, "eboss_sgc_true": 4, "desi_elg_true": 5}
    bits = json.loads(json.dumps(mask_bits_attributes()))["targets_mask_bits"]
    assert {name: entry["bit"] for name, entry in bits.items()} == sel.TARGET_BITS
    defs = json.loads(json.dumps(sel.SELECTION_DEFINITIONS))
    assert set(defs) == {"eboss_ngc", "eboss_sgc", "desi_elg"}
    text = json.dumps(defs)
    for number in ("21.825", "22.9", "22.825", "62.79716079", "30.05661087", "12.75",
                   "0.637", "0.218", "0.571", "23.4", "1.15"):
        assert number in text


@pytest.mark.parametrize("cols", ["anymask", "allmask", None])
def test_selection_definitions_mask_columns(cols):
    defs = sel.selection_definitions(cols)
    json.dumps(defs)
    text = defs["eboss_ngc"]["mask_columns"]
    assert (cols in text) if cols else ("no mask cut" in text)
    assert "mask_columns" not in sel.SELECTION_DEFINITIONS["eboss_ngc"]
    with pytest.raises(ValueError, match="mask_columns must be 'anymask', 'allmask' or None, got 'bogus'"):
        sel.selection_definitions("bogus")


def test_no_warnings_on_bad_inputs_explicit():
    bad = np.array([0.0, -1.0, np.nan, np.inf, -np.inf, 1e300, 1e-300])
    ok = np.array([1.0] * bad.size)
    depth = {b: np.full(bad.size, np.nan) for b in "grz"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for args in ((bad, ok, ok), (ok, bad, ok), (ok, ok, bad), (bad, bad, bad)):
            assert not sel.desi_elg(*args)[:5].any()
            assert not sel.eboss_elg(*args, "ngc")[:5].any()
            assert not sel.eboss_elg(*args, "sgc")[:5].any()
            flux = dict(zip("grz", args))
            got = sel.targets_mask(flux, flux, np.ones(bad.size, bool), depth)
            assert not (got[:5]).any()
        assert np.isnan(sel.flux_to_mag(bad)[:5]).all()


# ------------------------------------------------------------- float64 at exact boundaries
# Inputs are stored as float32; every comparison is made in float64 on their exact values,
# so that a source exactly at a cut is selected (or not) whatever dtype the caller passes
# and whatever order the arithmetic happens in.

DESI_R_MIN = 10 ** ((22.5 - 23.4) / 2.5)  # not a float32 value


def _desi_at_r(rflux):
    """g, r, z fluxes of a source at `rflux` with comfortable colours (r-z 0.9, g-r 0.3)."""
    rflux = np.asarray(rflux)
    return (rflux * np.float32(10 ** (-0.3 / 2.5)), rflux, rflux * np.float32(10 ** (0.9 / 2.5)))


def test_desi_r_cut_at_float32_boundary():
    at = np.float32(DESI_R_MIN)  # float32 nearest to the cut: 0.43651583790..., above it
    below = np.nextafter(at, np.float32(0))
    rflux = np.array([below, at], np.float32)
    assert float(at) > DESI_R_MIN > float(below)
    # float32 arithmetic would round the cut to `at` itself and reject it (at > at is False)
    assert not (rflux > DESI_R_MIN)[1]
    for dtype in (np.float32, np.float64):
        g, r, z = (np.asarray(f, dtype) for f in _desi_at_r(rflux))
        assert list(sel.desi_elg(g, r, z)) == [False, True]


def test_eboss_depth_cuts_at_float32_boundary():
    ok = np.ones(1)
    limits = sel.EBOSS_DEPTH_MIN["ngc"]
    g32, r32 = np.float32(limits["g"]), np.float32(limits["r"])
    # float32(62.79716079) = 62.797161102... > limit: passes; float32(30.05661087) < limit: fails
    assert float(g32) > limits["g"] and float(r32) < limits["r"]
    for dtype in (np.float32, np.float64):
        def quality(dg, dr, dz):
            return sel.eboss_quality("ngc", np.array([dg], dtype), np.array([dr], dtype),
                                     np.array([dz], dtype))[0]
        assert quality(g32, 100 * ok[0], 100 * ok[0])
        assert not quality(100, r32, 100)
        assert not quality(100, 100, np.float32(11.0))  # strict: exactly 11 fails
        assert quality(100, 100, np.nextafter(np.float32(11.0), np.float32(12)))


def _straddling_pair():
    """A float32 flux and transmission whose quotient rounded to float32 lies above the
    DESI r cut while the exact (float64) quotient does not, or the reverse."""
    for t in np.linspace(0.8, 0.99, 400).astype(np.float32):
        f = np.nextafter(np.float32(DESI_R_MIN * float(t)), np.float32(0))
        for _ in range(8):
            q32 = float((np.array([f]) / np.array([t]))[0])
            if (q32 > DESI_R_MIN) != (float(f) / float(t) > DESI_R_MIN):
                return f, t
            f = np.nextafter(f, np.float32(1))
    raise AssertionError("no straddling pair found")


def test_measured_selection_divides_in_float64():
    from obiwan_h5.core.derivation import targets_bits

    flux, trans = _straddling_pair()
    exact = float(flux) / float(trans) > DESI_R_MIN
    g, r, z = _desi_at_r(np.array([flux], np.float32))
    columns = {}
    for band, value in zip("grz", (g, r, z)):
        columns[f"tractor_flux_{band}"] = np.asarray(value, np.float32)
        columns[f"tractor_mw_transmission_{band}"] = np.array([trans], np.float32)
        columns[f"{band}flux"] = np.asarray(value, np.float32)
        columns[f"mw_transmission_{band}"] = np.array([trans], np.float32)
        columns[f"tractor_psfdepth_{band}"] = np.array([1000.0], np.float32)
    bits = targets_bits(columns, np.array([True]))
    assert bool(bits[0] >> sel.TARGET_BITS["desi_elg"] & 1) == exact
    assert bool(bits[0] >> sel.TARGET_BITS["desi_elg_true"] & 1) == exact
    wide = {name: value.astype(np.float64) for name, value in columns.items()}
    assert np.array_equal(targets_bits(wide, np.array([True])), bits)


def _old_desi_elg(gflux, rflux, zflux):
    """The DESI cut as obiwan's derived_tables.py wrote it (`TargetSelection._desi_elg`): no
    check that the fluxes are finite."""
    with np.errstate(invalid="ignore", over="ignore"):
        elg = rflux > 10 ** ((22.5 - 23.4) / 2.5)
        elg &= zflux > rflux * 10 ** (0.3 / 2.5)
        elg &= zflux < rflux * 10 ** (1.6 / 2.5)
        rflux, zflux = rflux.clip(0), zflux.clip(0)
        elg &= rflux ** 2.15 < gflux * zflux ** 1.15 * 10 ** (-0.15 / 2.5)
        elg &= zflux ** 1.2 < gflux * rflux ** 0.2 * 10 ** (1.6 / 2.5)
    return elg


@pytest.mark.parametrize("prefix, bit", [("tractor_", "desi_elg"), ("", "desi_elg_true")])
def test_desi_rejects_an_infinite_g_flux_from_a_zero_transmission(prefix, bit):
    """docs/migration.md: with mw_transmission_g = 0 (g flux / transmission = +inf) or an
    infinite g flux the old cut selected the source; obiwan_h5 does not."""
    from obiwan_h5.core.derivation import targets_bits

    g, r, z = (np.full(3, f, np.float32) for f in fluxes_from_colours(23.3, 0.3, 0.8))
    g[1] = np.inf                      # an infinite g flux
    trans_g = np.array([1.0, 1.0, 0.0], np.float32)   # row 2: zero transmission
    ones = np.ones(3, np.float32)
    with np.errstate(divide="ignore"):
        assert _old_desi_elg(g / trans_g, r / ones, z / ones).tolist() == [True, True, True]
    finite = {"g": np.full(3, g[0]), "r": r, "z": z}
    columns = {}
    for band in "grz":       # the other set of fluxes ordinary, so only `bit` can change
        columns[f"{band}flux"] = columns[f"tractor_flux_{band}"] = finite[band]
        columns[f"mw_transmission_{band}"] = columns[f"tractor_mw_transmission_{band}"] = ones
    columns[f"{prefix}mw_transmission_g"] = trans_g
    columns["tractor_flux_g" if prefix else "gflux"] = g
    bits = targets_bits(columns, np.ones(3, bool))
    other = "desi_elg_true" if prefix else "desi_elg"
    assert all(b >> sel.TARGET_BITS[other] & 1 for b in bits)
    assert [bool(b >> sel.TARGET_BITS[bit] & 1) for b in bits] == [True, False, False]



# ------------------------------------------------- every cut at its exact float64 boundary
# Each cut is met with equality in the code's own arithmetic (eBOSS: magnitudes from
# `flux_to_mag`, colours as their differences; DESI: the documented flux form as written;
# bounds evaluated in float64 on arrays, as the code does). Then the input that moves is
# stepped by one float64 either side (a magnitude for eBOSS, which compares magnitudes, a
# flux for DESI): all cuts are strict, so on the boundary the source fails, one step inside
# it passes, one step outside it fails.

def _first_reaching(f, target, guess):
    """The smallest float64 x within 1e-9 of positive `guess` where non-decreasing `f`
    reaches `target` (bisection on the bit patterns, which order positive floats)."""
    def as_float(bits):
        return np.int64(bits).view(np.float64)

    lo = int(np.float64(guess * (1 - 1e-9)).view(np.int64))
    hi = int(np.float64(guess * (1 + 1e-9)).view(np.int64))
    assert f(as_float(lo)) < target <= f(as_float(hi))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if f(as_float(mid)) >= target else (mid, hi)
    return as_float(hi)


def _meeting_point(lhs, rhs, guess, slope):
    """The float64 x near `guess` where ``lhs(x) == rhs`` with both neighbours of x strictly
    on either side, or None; `lhs` is monotone, increasing when `slope` is +1."""
    x = _first_reaching(lambda v: slope * lhs(v), slope * rhs, guess)
    up, down = lhs(np.nextafter(x, np.inf)), lhs(np.nextafter(x, 0.0))
    if lhs(x) == rhs and slope * up > slope * rhs > slope * down:
        return x
    return None


def flux_at_mag(mag):
    """A float64 flux whose `flux_to_mag` is exactly the float64 `mag` (a flux step moves the
    magnitude by far less than a magnitude step, so every magnitude near 22 is reached)."""
    def mag_of(flux):
        return sel.flux_to_mag(np.array([flux]))[0]

    flux = _first_reaching(lambda f: -mag_of(f), -mag, 10 ** ((22.5 - mag) / 2.5))
    assert mag_of(flux) == mag
    return flux


# the documented eBOSS cuts, as functions of magnitude arrays: name -> (lhs, relation, rhs,
# moved band, d lhs / d moved, a point (g, g-r, r-z) near the cut, well inside the others)
def _eboss_exact_cuts(cap):
    a, b = {"ngc": (0.637, 0.399), "sgc": (0.218, 0.571)}[cap]
    return {
        "g > 21.825": (lambda g, r, z: g, ">", lambda g, r, z: 21.825, "g", +1, (21.825, 0.6, 1.2)),
        "g < g_high": (lambda g, r, z: g, "<", lambda g, r, z: G_HIGH[cap], "g", +1, (G_HIGH[cap], 0.6, 1.2)),
        "gr > low(rz)": (lambda g, r, z: g - r, ">", lambda g, r, z: -0.068 * (r - z) + 0.457, "g", +1,
                         (22.4, ngc_gr_low(1.2), 1.2)),
        "gr < high(rz)": (lambda g, r, z: g - r, "<", lambda g, r, z: 0.112 * (r - z) + 0.773, "g", +1,
                          (22.4, ngc_gr_high(1.2), 1.2)),
        "rz > low(gr)": (lambda g, r, z: r - z, ">", lambda g, r, z: a * (g - r) + b, "z", -1,
                         (22.4, 0.6, RZ_LOW[cap](0.6))),
        "rz < high(gr)": (lambda g, r, z: r - z, "<", lambda g, r, z: -0.555 * (g - r) + 1.901, "z", -1,
                          (22.4, 0.6, rz_high(0.6))),
    }


# the documented DESI flux form as functions of flux arrays (rflux, zflux clipped at 0 as
# the definition says); each strict cut written as lhs > rhs or lhs < rhs with lhs the side
# holding the moved flux: name -> (lhs, relation, rhs, moved band, d lhs / d moved, fluxes)
DESI_EXACT_CUTS = {
    "rflux > 10**((22.5 - 23.4)/2.5)": (lambda g, r, z: np.clip(r, 0, None), ">",
                                        lambda g, r, z: 10 ** ((22.5 - 23.4) / 2.5), "r", +1,
                                        _desi_at_r(10 ** ((22.5 - 23.4) / 2.5))),
    "zflux > rflux*10**(0.3/2.5)": (lambda g, r, z: np.clip(z, 0, None), ">",
                                    lambda g, r, z: np.clip(r, 0, None) * 10 ** (0.3 / 2.5), "z", +1,
                                    (1.0, 1.0, 10 ** (0.3 / 2.5))),
    "zflux < rflux*10**(1.6/2.5)": (lambda g, r, z: np.clip(z, 0, None), "<",
                                    lambda g, r, z: np.clip(r, 0, None) * 10 ** (1.6 / 2.5), "z", +1,
                                    (10 ** (0.5 / 2.5), 1.0, 10 ** (1.6 / 2.5))),
    # g exactly on the two colour cuts of the magnitude form (as in DESI_BOUNDARIES)
    "rflux**2.15 < gflux*zflux**1.15*10**(-0.15/2.5)": (
        lambda g, r, z: g * np.clip(z, 0, None) ** 1.15 * 10 ** (-0.15 / 2.5), ">",
        lambda g, r, z: np.clip(r, 0, None) ** 2.15, "g", +1,
        fluxes_from_colours(23.0 + 1.15 * 0.5 - 0.15, 1.15 * 0.5 - 0.15, 0.5)),
    "zflux**1.2 < gflux*rflux**0.2*10**(1.6/2.5)": (
        lambda g, r, z: g * np.clip(r, 0, None) ** 0.2 * 10 ** (1.6 / 2.5), ">",
        lambda g, r, z: np.clip(z, 0, None) ** 1.2, "g", +1,
        fluxes_from_colours(23.0 + 1.6 - 1.2, 1.6 - 1.2, 1.0)),
}


def _on_the_cut(cut, start):
    """Values (g, r, z) on which `cut` holds with equality: the moved one solved for, the
    others nudged from `start` until a solution is exact with strict neighbours."""
    lhs, _, rhs, moved, slope, _ = cut
    column = "grz".index(moved)
    fixed = [c for c in range(3) if c != column][-1]

    def at(values, x):
        values = [np.array([v]) for v in values]
        values[column] = np.array([x])
        return values

    for nudge in range(200):
        values = list(start)
        values[fixed] = values[fixed] * (1 + nudge * 1e-12)
        bound = np.broadcast_to(rhs(*at(values, values[column])), (1,))[0]
        x = _meeting_point(lambda v: lhs(*at(values, v))[0], bound, values[column], slope)
        if x is not None:
            values[column] = x
            return values
    raise AssertionError("no exact point found")


def _three_rows(cut, on):
    """The point on the cut, then one float64 step of the moved value inside, then outside."""
    _, relation, _, moved, slope, _ = cut
    column = "grz".index(moved)
    inward = slope if relation == ">" else -slope
    rows = [list(on), list(on), list(on)]
    rows[1][column] = np.nextafter(on[column], inward * np.inf)
    rows[2][column] = np.nextafter(on[column], -inward * np.inf)
    values = [np.array(band, np.float64) for band in zip(*rows)]
    lhs = cut[0](*values)
    rhs = np.broadcast_to(cut[2](*values), lhs.shape)
    holds = lhs > rhs if relation == ">" else lhs < rhs
    assert lhs[0] == rhs[0] and holds.tolist() == [False, True, False]
    return values


EBOSS_EXACT = [(cap, name) for cap in ("ngc", "sgc") for name in _eboss_exact_cuts("ngc")]


@pytest.mark.parametrize("cap,name", EBOSS_EXACT, ids=[f"{c}:{n}" for c, n in EBOSS_EXACT])
def test_eboss_cuts_at_their_exact_boundary_and_one_float_either_side(cap, name):
    cut = _eboss_exact_cuts(cap)[name]
    g, gr, rz = cut[5]
    mags = _three_rows(cut, _on_the_cut(cut, (g, g - gr, g - gr - rz)))
    fluxes = [np.array([flux_at_mag(m) for m in band]) for band in mags]
    assert all(np.array_equal(sel.flux_to_mag(f), m) for f, m in zip(fluxes, mags))
    assert sel.eboss_elg(*fluxes, cap).tolist() == [False, True, False]
    flux = dict(zip("grz", fluxes))   # the same through the true-flux bit of targets_mask
    bits = sel.targets_mask(flux, flux, np.ones(3, bool), _good_depth(3))
    assert [bool(b >> sel.TARGET_BITS[f"eboss_{cap}_true"] & 1) for b in bits] == [False, True, False]


@pytest.mark.parametrize("name", list(DESI_EXACT_CUTS))
def test_desi_cuts_at_their_exact_boundary_and_one_float_either_side(name):
    cut = DESI_EXACT_CUTS[name]
    fluxes = _three_rows(cut, _on_the_cut(cut, [float(f) for f in cut[5]]))
    assert sel.desi_elg(*fluxes).tolist() == [False, True, False]
    flux = dict(zip("grz", fluxes))
    bits = sel.targets_mask(flux, flux, np.ones(3, bool), _good_depth(3))
    assert [bool(b >> sel.TARGET_BITS["desi_elg_true"] & 1) for b in bits] == [False, True, False]
    assert [bool(b >> sel.TARGET_BITS["desi_elg"] & 1) for b in bits] == [False, True, False]


@pytest.mark.parametrize("cap", ["ngc", "sgc"])
@pytest.mark.parametrize("band", "grz")
def test_eboss_depth_and_mask_cuts_at_their_exact_boundary(cap, band):
    """psfdepth > limit is strict: the limit fails, the next float64 above passes, the one
    below fails; the mask cut passes 0 only (not -1, not 1)."""
    limit = sel.EBOSS_DEPTH_MIN[cap][band]
    depth = {b: np.full(3, 1e4) for b in "grz"}
    depth[band] = np.array([limit, np.nextafter(limit, np.inf), np.nextafter(limit, 0.0)])
    assert sel.eboss_quality(cap, *depth.values()).tolist() == [False, True, False]
    masks = {b: np.zeros(3, np.int16) for b in "grz"}
    masks[band] = np.array([-1, 0, 1], np.int16)
    assert sel.eboss_quality(cap, *[np.full(3, 1e4)] * 3, *masks.values()).tolist() == [False, True, False]
