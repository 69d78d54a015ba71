"""Tests of the synthetic production writer (`obiwan_h5.sim.simulate`, `obiwan_h5.core.brickgrid`)."""

import argparse
import os
import pathlib

import fitsio
import numpy as np
import pytest

from obiwan_h5.cli.sim import add_simulate_arguments, run_simulate
from obiwan_h5.core import brickgrid
from obiwan_h5.errors import InputError
from obiwan_h5.production.layout import Production
from obiwan_h5.sim.simulate import simulate

REAL_BRICK = {"brickname": "1741p242", "brickid": 466768, "brickq": 2, "brickrow": 457,
              "brickcol": 636, "ra": 174.11854103, "dec": 24.25, "ra1": 173.98176292,
              "ra2": 174.25531915, "dec1": 24.125, "dec2": 24.375}


def _real_data_dir():
    """The real Legacy Survey samples (shared/data/real), wherever this checkout has them."""
    here = pathlib.Path(__file__).resolve().parent
    candidates = [os.environ.get("OBIWAN_H5_REAL_DATA"), here / "data" / "real",
                  here.parent / "data" / "real", "/work/shared/data/real"]
    for path in candidates:
        if path and (pathlib.Path(path) / "tractor-3301m002.fits").exists():
            return pathlib.Path(path)
    pytest.skip("real Legacy Survey samples not found (set OBIWAN_H5_REAL_DATA)")


def _unit(ra, dec):
    ra, dec = np.radians(ra), np.radians(dec)
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def _nearest_arcsec(ra, dec, ref_ra, ref_dec):
    """Distance (arcsec) from each position to the nearest reference position."""
    dots = np.clip(_unit(ra, dec) @ _unit(ref_ra, ref_dec).T, -1, 1)
    return np.degrees(np.arccos(dots.max(axis=1))) * 3600


@pytest.fixture(scope="module")
def dr5(tmp_path_factory):
    out = tmp_path_factory.mktemp("dr5") / "prod"
    names = simulate(out, n_bricks=2, rsdirs=2, per_rsdir=300, seed=7)
    return out, names


@pytest.fixture(scope="module")
def dr3(tmp_path_factory):
    out = tmp_path_factory.mktemp("dr3") / "prod"
    names = simulate(out, bricks=["1741p242"], rsdirs=1, per_rsdir=100, schema="dr3", seed=3)
    return out, names


def _each_rsdir(out, names):
    prod = Production(out)
    for brick in names:
        for rsdir in prod.rsdirs(brick):
            yield prod, brick, rsdir


# ------------------------------------------------------------------------ grid

def test_grid_reproduces_real_survey_bricks_row():
    row = brickgrid.lookup(["1741p242"])[0]
    for key, value in REAL_BRICK.items():
        if isinstance(value, float):
            assert row[key] == pytest.approx(value, abs=1e-8), key
        elif key == "brickname":
            assert row[key].decode() == value
        else:
            assert row[key] == value, key
    assert brickgrid.ncols(457) == 1316
    assert sum(brickgrid.ncols()) == 662174  # brickid range [1, 662174] of the DR pages


def test_grid_matches_real_files():
    real = _real_data_dir()
    table = fitsio.read(real / "survey-bricks-testcase_decals_z.fits.gz")
    mine = brickgrid.lookup([table["brickname"][0].strip()])
    assert _lower_dtypes(mine) == _lower_dtypes(table)
    assert list(mine.dtype.names) == list(table.dtype.names)
    for name in table.dtype.names:
        if table.dtype[name].kind == "f":
            np.testing.assert_allclose(mine[name], table[name], rtol=0, atol=1e-9)
        elif table.dtype[name].kind in "iu":
            np.testing.assert_array_equal(mine[name], table[name])
    # the three real tractor catalogs carry the brickid of their brick name
    for path in sorted(real.glob("tractor-*.fits")):
        cat = fitsio.read(path, columns=["BRICKNAME", "BRICKID"])
        assert brickgrid.lookup([cat["BRICKNAME"][0].strip()])["brickid"][0] == cat["BRICKID"][0]


def test_survey_bricks_file_has_real_dtypes(dr5):
    real = _real_data_dir()
    out, _ = dr5
    table = fitsio.read(real / "survey-bricks-testcase_decals_z.fits.gz")
    assert fitsio.read(out / "survey-bricks.fits").dtype == table.dtype


def test_grid_rejects_names_not_on_grid():
    with pytest.raises(InputError):
        brickgrid.lookup(["0000p000"])  # first centre of the equator row is at 0.125
    with pytest.raises(InputError):
        brickgrid.lookup(["1741p243"])
    with pytest.raises(InputError):
        brickgrid.lookup(["../etc"])


def test_footprint_is_deterministic_and_contiguous():
    a = brickgrid.sample_footprint(50, seed=5)
    b = brickgrid.sample_footprint(50, seed=5)
    c = brickgrid.sample_footprint(50, seed=6)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert len(np.unique(a["brickname"])) == 50
    assert np.all((a["dec"] > -10) & (a["dec"] < 40))
    # one patch: it spans a few degrees, not the sky
    assert np.ptp(a["dec"]) < 3


# ---------------------------------------------------------------------- layout

def test_layout_has_every_file(dr5):
    out, names = dr5
    prod = Production(out)
    assert (out / "bricks.txt").read_text().split() == names == sorted(names)
    bricks = fitsio.read(out / "survey-bricks.fits")
    assert [n.strip() for n in bricks["brickname"]] == names
    truth = fitsio.read(out / "randoms.fits")
    assert set(truth.dtype.names) >= {"id", "ra", "dec", "g", "r", "z", "rhalf", "n", "ba", "pa",
                                      "e1", "e2", "redshift"}
    for brick in names:
        assert prod.rsdirs(brick) == ["rs0", "rs1"]
        assert os.path.isfile(prod.dr_tractor(brick))
        for rsdir in ("rs0", "rs1"):
            for path in (prod.simcat(brick, rsdir), prod.ids_added(brick, rsdir),
                         prod.skipped_ids(brick, rsdir), prod.metacat(brick, rsdir),
                         prod.tractor(brick, rsdir)):
                assert os.path.isfile(path), path
            meta = fitsio.read(prod.metacat(brick, rsdir))
            assert len(meta) == 1 and meta["nobj"][0] == 300


def test_simcat_columns_and_positions(dr5):
    out, names = dr5
    bricks = {n.strip(): row for n, row in zip(fitsio.read(out / "survey-bricks.fits")["brickname"],
                                               fitsio.read(out / "survey-bricks.fits"))}
    for prod, brick, rsdir in _each_rsdir(out, names):
        sim = fitsio.read(prod.simcat(brick, rsdir))
        expect = {"id": "i8", "ra": "f8", "dec": "f8", "x": "f4", "y": "f4", "gflux": "f4",
                  "rflux": "f4", "zflux": "f4", "mw_transmission_g": "f4", "mw_transmission_r": "f4",
                  "mw_transmission_z": "f4", "n": "f4", "rhalf": "f4", "e1": "f4", "e2": "f4"}
        assert {k: sim.dtype[k].str[1:] for k in sim.dtype.names} == expect
        assert len(sim) == 300
        b = bricks[brick]
        assert np.all((sim["ra"] >= b["ra1"]) & (sim["ra"] <= b["ra2"] + 1e-3))
        assert np.all((sim["x"] > 0) & (sim["x"] < 3600) & (sim["y"] > 0) & (sim["y"] < 3600))
        # x grows to the west (RA decreasing), y to the north
        assert np.corrcoef(sim["x"], sim["ra"])[0, 1] < -0.99
        assert np.corrcoef(sim["y"], sim["dec"])[0, 1] > 0.99
        assert np.all((sim["mw_transmission_g"] < sim["mw_transmission_r"])
                      & (sim["mw_transmission_r"] < sim["mw_transmission_z"]) & (sim["mw_transmission_g"] > 0.6))


# ---------------------------------------------------------------------- schemas

def _lower_dtypes(array):
    # fitsio returns strings as unicode on numpy 2 and big-endian numbers: compare the
    # kind and size only (strings by FITS width)
    out = {}
    for name in array.dtype.names:
        dt = array.dtype[name]
        base, shape = dt.base, dt.shape
        size = base.itemsize // 4 if base.kind == "U" else base.itemsize
        out[name.lower()] = ("S" if base.kind in "SU" else base.kind, size, shape)
    return out


def test_dr5_columns_match_real_catalogs(dr5):
    real = _real_data_dir()
    out, names = dr5
    prod = Production(out)
    real_types = _lower_dtypes(fitsio.read(real / "tractor-3301m002.fits"))
    for path in (prod.tractor(names[0], "rs0"), prod.dr_tractor(names[0])):
        mine = _lower_dtypes(fitsio.read(path))
        shared = sorted(set(mine) & set(real_types))
        assert len(shared) >= 60, shared  # flux, ivar, mw_transmission, depths, shapes, ...
        bad = {c: (mine[c], real_types[c]) for c in shared if mine[c] != real_types[c]}
        assert not bad
        for col in ("brick_primary", "anymask_g", "bx", "apflux_g", "psfsize_r", "wise_coadd_id"):
            assert col in mine


def test_dr5_types_and_values(dr5):
    out, names = dr5
    for prod, brick, rsdir in _each_rsdir(out, names):
        cat = fitsio.read(prod.tractor(brick, rsdir))
        assert set(np.char.strip(cat["type"].astype(str))) <= {"PSF", "REX", "EXP", "DEV", "COMP"}
        assert np.array_equal(cat["objid"], np.arange(len(cat)))
        assert np.all(cat["brickname"] == brick) and np.all(cat["release"] == 5000)
        for name in cat.dtype.names:
            if cat.dtype[name].kind == "f":
                assert np.all(np.isfinite(cat[name])), name
        assert np.all((cat["nobs_g"] >= 1) & (cat["nobs_g"] <= 5))
        assert 0 < np.mean(cat["anymask_r"] != 0) < 0.1
        assert np.all((cat["allmask_r"] & ~cat["anymask_r"]) == 0)
        assert np.all(cat["flux_ivar_r"] > 0) and np.all(cat["psfdepth_r"] >= cat["galdepth_r"])
        depth = 22.5 - 2.5 * np.log10(5 / np.sqrt(np.median(cat["galdepth_r"])))
        assert 22.5 < depth < 24.5


def test_dr3_schema(dr3):
    out, names = dr3
    prod = Production(out)
    for path in (prod.tractor(names[0], "rs0"), prod.dr_tractor(names[0])):
        cat = fitsio.read(path)
        assert "release" not in cat.dtype.names and "flux_g" not in cat.dtype.names
        for col in ("decam_flux", "decam_flux_ivar", "decam_mw_transmission", "decam_nobs",
                    "decam_anymask", "decam_allmask", "decam_depth", "decam_galdepth",
                    "decam_psfsize", "decam_fracflux", "decam_fracmasked", "decam_fracin",
                    "decam_rchi2"):
            assert cat[col].shape == (len(cat), 6), col
        for col in ("decam_apflux", "decam_apflux_resid", "decam_apflux_ivar"):
            assert cat[col].shape == (len(cat), 6, 8), col
        for col in ("wise_flux", "wise_flux_ivar", "wise_mw_transmission"):
            assert cat[col].shape == (len(cat), 4), col
        assert cat["decam_nobs"].dtype.kind == "u" and cat["decam_nobs"].dtype.itemsize == 1
        assert cat["decam_anymask"].dtype.itemsize == 2
        # g, r, z are filled; u, i, Y are empty
        assert np.all(cat["decam_flux_ivar"][:, [1, 2, 4]] > 0)
        assert np.all(cat["decam_flux"][:, [0, 3, 5]] == 0) and np.all(cat["decam_nobs"][:, [0, 3, 5]] == 0)
        assert set(np.char.strip(cat["type"].astype(str))) <= {"PSF", "SIMP", "EXP", "DEV", "COMP"}
        assert "SIMP" in set(np.char.strip(cat["type"].astype(str)))


# ------------------------------------------------------------------------- ids

def test_ids_added_subset_in_order_and_truth_covers(dr5):
    out, names = dr5
    truth = fitsio.read(out / "randoms.fits")
    assert len(np.unique(truth["id"])) == len(truth)
    seen = []
    for prod, brick, rsdir in _each_rsdir(out, names):
        sim = fitsio.read(prod.simcat(brick, rsdir))["id"]
        added = fitsio.read(prod.ids_added(brick, rsdir))["id"]
        skipped = fitsio.read(prod.skipped_ids(brick, rsdir))["ids"]
        assert added.dtype.kind == "i" and added.dtype.itemsize == 8
        assert np.array_equal(added, sim[np.isin(sim, added)])  # subset, simcat order
        assert 0.8 <= len(added) / len(sim) <= 0.97
        assert 1 <= len(skipped) <= 5 and not np.isin(skipped, sim).any()
        seen += [sim, skipped]
    seen = np.concatenate(seen)
    assert len(np.unique(seen)) == len(seen)  # unique over bricks and rsdirs
    assert np.isin(seen, truth["id"]).all()


def test_simcat_fluxes_are_truth_times_transmission(dr5):
    out, names = dr5
    truth = fitsio.read(out / "randoms.fits")
    order = np.argsort(truth["id"])
    for prod, brick, rsdir in _each_rsdir(out, names):
        sim = fitsio.read(prod.simcat(brick, rsdir))
        row = truth[order[np.searchsorted(truth["id"], sim["id"], sorter=order)]]
        assert np.array_equal(row["id"], sim["id"])
        np.testing.assert_allclose(row["ra"], sim["ra"], rtol=0, atol=1e-12)
        for b in "grz":
            expect = 10 ** ((22.5 - row[b]) / 2.5) * sim[f"mw_transmission_{b}"]
            np.testing.assert_allclose(sim[f"{b}flux"], expect, rtol=2e-7)
            assert not np.allclose(sim[f"{b}flux"], 10 ** ((22.5 - row[b]) / 2.5), rtol=1e-3)


def test_truth_magnitudes_are_elg_like(dr5):
    out, _ = dr5
    t = fitsio.read(out / "randoms.fits")
    assert 20.5 < np.median(t["g"]) < 23.5 and t["g"].min() >= 21 and t["g"].max() <= 25
    rz, gr = t["r"] - t["z"], t["g"] - t["r"]
    desi = (t["r"] < 23.4) & (rz > 0.3) & (rz < 1.6) & (gr < 1.15 * rz - 0.15) & (gr < 1.6 - 1.2 * rz)
    assert 0.2 < desi.mean() < 0.8
    assert set(np.unique(t["n"])) <= {0.0, 1.0, 4.0} and np.mean(t["n"] == 1) > 0.5


# -------------------------------------------------------------------- recovery

def test_recovered_fraction_falls_with_magnitude(dr5):
    out, names = dr5
    truth = fitsio.read(out / "randoms.fits")
    rmag, found = [], []
    for prod, brick, rsdir in _each_rsdir(out, names):
        sim = fitsio.read(prod.simcat(brick, rsdir))
        sim = sim[np.isin(sim["id"], fitsio.read(prod.ids_added(brick, rsdir))["id"])]
        cat = fitsio.read(prod.tractor(brick, rsdir))
        cat = cat[cat["brick_primary"]]
        found.append(_nearest_arcsec(sim["ra"], sim["dec"], cat["ra"], cat["dec"]) < 1)
        rmag.append(truth["r"][np.searchsorted(truth["id"], sim["id"])])
    rmag, found = np.concatenate(rmag), np.concatenate(found)
    bright, faint = found[rmag < 22].mean(), found[rmag > 24].mean()
    assert bright > 0.95
    assert faint < 0.4
    assert bright > 3 * faint


def test_measured_flux_scatter_follows_ivar(dr5):
    out, names = dr5
    pulls, offsets = [], []
    for prod, brick, rsdir in _each_rsdir(out, names):
        sim = fitsio.read(prod.simcat(brick, rsdir))
        cat = fitsio.read(prod.tractor(brick, rsdir))
        dr = fitsio.read(prod.dr_tractor(brick))
        alone = _nearest_arcsec(sim["ra"], sim["dec"], dr["ra"], dr["dec"]) > 3
        sim = sim[alone]
        dots = np.clip(_unit(sim["ra"], sim["dec"]) @ _unit(cat["ra"], cat["dec"]).T, -1, 1)
        j = dots.argmax(axis=1)
        sep = np.degrees(np.arccos(dots[np.arange(len(sim)), j])) * 3600
        m = sep < 1
        pulls.append((cat["flux_r"][j[m]] - sim["rflux"][m]) * np.sqrt(cat["flux_ivar_r"][j[m]]))
        offsets.append(sep[m])
    pulls, offsets = np.concatenate(pulls), np.concatenate(offsets)
    assert 0.8 < np.std(pulls) < 1.3 and abs(np.mean(pulls)) < 0.2
    assert 0.02 < np.median(offsets) < 0.25  # astrometric scatter, arcsec


def test_measured_shape_scatter_follows_ivar(dr5):
    """The radius noise the simulator adds is the one its shape*_r_ivar says: unit-normal
    pulls for the exponential fits, as for e1 and the fluxes; DEV fits sit off (their radius
    is larger than the injected profile's)."""
    from astropy.stats import mad_std

    out, names = dr5
    pulls = {"exp": [], "dev": [], "e1": []}
    for prod, brick, rsdir in _each_rsdir(out, names):
        sim = fitsio.read(prod.simcat(brick, rsdir))
        cat = fitsio.read(prod.tractor(brick, rsdir))
        dr = fitsio.read(prod.dr_tractor(brick))
        sim = sim[_nearest_arcsec(sim["ra"], sim["dec"], dr["ra"], dr["dec"]) > 3]
        dots = np.clip(_unit(sim["ra"], sim["dec"]) @ _unit(cat["ra"], cat["dec"]).T, -1, 1)
        j = dots.argmax(axis=1)
        m = np.degrees(np.arccos(dots[np.arange(len(sim)), j])) * 3600 < 1
        sim, fit = sim[m], cat[j[m]]
        kind = np.char.strip(fit["type"].astype(str))
        exp = np.isin(kind, ["EXP", "REX"])
        pulls["exp"].append((fit["shapeexp_r"] - sim["rhalf"])[exp] * np.sqrt(fit["shapeexp_r_ivar"][exp]))
        fitted = kind == "EXP"
        pulls["e1"].append((fit["shapeexp_e1"] - sim["e1"])[fitted] * np.sqrt(fit["shapeexp_e1_ivar"][fitted]))
        dev = kind == "DEV"
        pulls["dev"].append((fit["shapedev_r"] - sim["rhalf"])[dev] * np.sqrt(fit["shapedev_r_ivar"][dev]))
    pulls = {key: np.concatenate(values) for key, values in pulls.items()}
    assert len(pulls["exp"]) > 200 and len(pulls["dev"]) > 40
    assert 0.85 < mad_std(pulls["exp"]) < 1.2 and abs(np.median(pulls["exp"])) < 0.2
    assert 0.85 < mad_std(pulls["e1"]) < 1.2
    assert np.median(pulls["dev"]) > 1


def test_fraction_of_randoms_on_real_sources(dr5):
    out, names = dr5
    near = []
    for prod, brick, rsdir in _each_rsdir(out, names):
        sim = fitsio.read(prod.simcat(brick, rsdir))
        dr = fitsio.read(prod.dr_tractor(brick))
        assert 100 <= len(dr) <= 1000
        near.append(_nearest_arcsec(sim["ra"], sim["dec"], dr["ra"], dr["dec"]) < 1)
    frac = np.concatenate(near).mean()
    assert 0.03 <= frac <= 0.15


def test_brick_primary_marks_sources_outside(dr5):
    out, names = dr5
    bricks = fitsio.read(out / "survey-bricks.fits")
    for brick in bricks:
        name = brick["brickname"].strip()
        cat = fitsio.read(Production(out).dr_tractor(name))
        inside = ((cat["ra"] >= brick["ra1"]) & (cat["ra"] < brick["ra2"])
                  & (cat["dec"] >= brick["dec1"]) & (cat["dec"] < brick["dec2"]))
        assert np.array_equal(cat["brick_primary"], inside)
        assert 0 < (~inside).sum() < 0.1 * len(cat)


# ----------------------------------------------------------------- determinism

def _tree_bytes(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_byte_identical_reruns(tmp_path):
    kw = dict(n_bricks=2, rsdirs=2, per_rsdir=40, seed=11)
    simulate(tmp_path / "a", **kw)
    simulate(tmp_path / "b", processes=2, **kw)
    a, b = _tree_bytes(tmp_path / "a"), _tree_bytes(tmp_path / "b")
    assert len(a) == 2 + 2 + 2 * (1 + 2 * 5)  # top-level files + DR + per-rsdir files
    assert a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a)
    simulate(tmp_path / "c", n_bricks=2, rsdirs=2, per_rsdir=40, seed=12)
    assert _tree_bytes(tmp_path / "c")[pathlib.Path("randoms.fits")] != a[pathlib.Path("randoms.fits")]


# --------------------------------------------------------------- bad arguments

def test_bad_arguments(tmp_path):
    with pytest.raises(InputError):
        simulate(tmp_path / "a", bricks=["1741x242"])
    with pytest.raises(InputError):
        simulate(tmp_path / "b", bricks=["0000p000"])
    with pytest.raises(InputError):
        simulate(tmp_path / "c", n_bricks=0)
    with pytest.raises(InputError):
        simulate(tmp_path / "d", per_rsdir=0)
    with pytest.raises(InputError):
        simulate(tmp_path / "e", rsdirs=["rs0", "bad"])
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    with pytest.raises(InputError):
        simulate(busy, n_bricks=1)
    # --overwrite never deletes a directory simulate did not write
    with pytest.raises(InputError):
        simulate(busy, n_bricks=1, overwrite=True)
    assert (busy / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_overwrite_replaces_simulated_production(tmp_path):
    out = tmp_path / "prod"
    first = simulate(out, n_bricks=3, rsdirs=1, per_rsdir=20, seed=1)
    with pytest.raises(InputError):
        simulate(out, n_bricks=1, rsdirs=1, per_rsdir=20, seed=2)
    second = simulate(out, n_bricks=1, rsdirs=1, per_rsdir=20, seed=2, overwrite=True)
    assert len(second) == 1
    left = sorted(p.name for p in (out / "tractor").rglob("*.fits"))
    assert left == [f"tractor-{second[0]}.fits"] and set(first) != set(second)


def _cli(argv):
    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    return run_simulate(parser.parse_args(argv))


def test_cli_brick_list_and_rsdir_names(tmp_path, capsys):
    bricks = tmp_path / "bricks.txt"
    bricks.write_text("# two real bricks\n3301m002\n1741p242\n\n")
    out = tmp_path / "prod"
    rc = _cli(["-o", str(out), "--bricks", str(bricks), "--rsdirs", "more_rs0,rs1,skip_rs0,rs0",
               "--per-rsdir", "10", "--processes", "1", "--schema", "dr3"])
    assert rc == 0
    prod = Production(out)
    assert (out / "bricks.txt").read_text().split() == ["1741p242", "3301m002"]
    assert prod.rsdirs("3301m002") == ["rs0", "rs1", "skip_rs0", "more_rs0"]
    assert "decam_flux" in fitsio.read(prod.tractor("3301m002", "skip_rs0")).dtype.names
    bricks.write_text("1741p242\n1741p24\n")
    with pytest.raises(InputError):
        _cli(["-o", str(tmp_path / "other"), "--bricks", str(bricks)])
    with pytest.raises(InputError):
        _cli(["-o", str(tmp_path / "zero"), "--n-bricks", "0"])
