"""End-to-end checks of `obiwan-h5 derive` against the production's own files (issue 3)."""

import os
import shutil

import fitsio
import h5py
import numpy as np
import pytest

from obiwan_h5.cli import main
from obiwan_h5.fileformat import DONE, FAILED, INCOMPLETE
from obiwan_h5.job import DeriveOptions, derive
from obiwan_h5.job.mpi import SerialComm
from obiwan_h5.production.layout import Production


def _added_count(production, brick):
    total = 0
    for rsdir in production.rsdirs(brick):
        simcat = fitsio.read(production.simcat(brick, rsdir), columns=["id"])["id"]
        added = fitsio.read(production.ids_added(brick, rsdir))["id"]
        total += int(np.isin(simcat, added).sum())
    return total


def _brute_force_match(ra, dec, tra, tdec, radius_arcsec):
    """Whether each (ra, dec) has any (tra, tdec) within the radius, by haversine over all pairs."""
    if len(tra) == 0:
        return np.zeros(len(ra), bool)
    r1, d1, r2, d2 = (np.radians(np.asarray(a, np.float64)) for a in (ra, dec, tra, tdec))
    hav = (np.sin((d2[None, :] - d1[:, None]) / 2) ** 2
           + np.cos(d1[:, None]) * np.cos(d2[None, :]) * np.sin((r2[None, :] - r1[:, None]) / 2) ** 2)
    sep = np.degrees(2 * np.arcsin(np.sqrt(np.clip(hav, 0, 1)))) * 3600
    return sep.min(axis=1) <= radius_arcsec


def test_counts_match_simcat_rows_added(dr5_production, dr5_derived):
    production = Production(dr5_production)
    with h5py.File(dr5_derived, "r") as derived:
        names = [name.decode() for name in derived["bricks/name"][:]]
        counts = derived["bricks/count"][:]
        offsets = derived["bricks/offset"][:]
        status = derived["bricks/status"][:]
        nrows = len(derived["randoms/unique_id"])
    assert names == sorted(names)
    assert all(status == DONE)
    for name, count in zip(names, counts):
        assert count == _added_count(production, name)
    assert offsets[0] == 0 and np.all(offsets[1:] == np.cumsum(counts)[:-1])
    assert counts.sum() == nrows


def test_unique_id_unique_and_well_formed(dr5_derived):
    with h5py.File(dr5_derived, "r") as derived:
        uid = derived["randoms/unique_id"][:]
        ids = derived["randoms/id"][:]
        bricks = derived["randoms/brickname"][:]
        rsdirs = derived["randoms/rsdir"][:]
    assert len(np.unique(uid)) == len(uid)
    expected = [f"{i}_{b.decode()}_{r.decode()}".encode() for i, b, r in zip(ids, bricks, rsdirs)]
    assert list(uid) == expected


def test_recovered_bit_agrees_with_brute_force(dr5_production, dr5_derived):
    production = Production(dr5_production)
    with h5py.File(dr5_derived, "r") as derived:
        ra, dec = derived["randoms/ra"][:], derived["randoms/dec"][:]
        mask = derived["randoms/obiwan_mask"][:]
        bricks = derived["randoms/brickname"][:]
        rsdirs = derived["randoms/rsdir"][:]
        tra = derived["randoms/tractor_ra"][:]
        radius = derived.attrs["match_radius_arcsec"]
    expected = np.zeros(len(ra), bool)
    for brick in np.unique(bricks):
        for rsdir in np.unique(rsdirs[bricks == brick]):
            rows = (bricks == brick) & (rsdirs == rsdir)
            tractor = fitsio.read(production.tractor(brick.decode(), rsdir.decode()))
            tractor = tractor[tractor["brick_primary"]]
            expected[rows] = _brute_force_match(ra[rows], dec[rows], tractor["ra"], tractor["dec"], radius)
    recovered = (mask & 1) > 0
    assert np.array_equal(recovered, expected)
    assert 0.2 < recovered.mean() < 0.98  # the simulator's recovery is neither all nor nothing
    assert np.all(np.isfinite(tra[recovered])) and np.all(np.isnan(tra[~recovered]))
    # bit 1 only ever set together with bit 0
    assert not np.any(((mask & 2) > 0) & ((mask & 1) == 0))
    assert np.any(mask & 2)


def _mag(flux):
    flux = np.asarray(flux, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, 22.5 - 2.5 * np.log10(np.where(flux > 0, flux, 1)), np.nan)


def _desi(g, r, z):
    """DESI ELG (FDR) in magnitude form (docs/concepts.md)."""
    rz, gr = r - z, g - r
    return (r < 23.4) & (rz > 0.3) & (rz < 1.6) & (gr < 1.15 * rz - 0.15) & (gr < 1.6 - 1.2 * rz)


def _eboss(g, r, z, region):
    rz, gr = r - z, g - r
    gmax, rzmin = (22.9, 0.637 * gr + 0.399) if region == "ngc" else (22.825, 0.218 * gr + 0.571)
    return ((g > 21.825) & (g < gmax) & (gr > -0.068 * rz + 0.457) & (gr < 0.112 * rz + 0.773)
            & (rz > rzmin) & (rz < -0.555 * gr + 1.901))


def test_targets_mask_agrees_with_spec_formulas(dr5_derived):
    with h5py.File(dr5_derived, "r") as derived:
        col = {name: derived["randoms"][name][:] for name in derived["randoms"]}
    with np.errstate(invalid="ignore"):
        true = [_mag(col[f"{b}flux"] / col[f"mw_transmission_{b}"]) for b in "grz"]
        meas = [_mag(col[f"tractor_flux_{b}"] / col[f"tractor_mw_transmission_{b}"]) for b in "grz"]
        matched = (col["obiwan_mask"] & 1) > 0
        quality = {
            region: matched
            & (col["tractor_psfdepth_g"] > 62.79716079) & (col["tractor_psfdepth_r"] > 30.05661087)
            & (col["tractor_psfdepth_z"] > zdepth)
            & (col["tractor_anymask_g"] == 0) & (col["tractor_anymask_r"] == 0) & (col["tractor_anymask_z"] == 0)
            & col["tractor_brick_primary"]
            for region, zdepth in (("ngc", 11.0), ("sgc", 12.75))
        }
        expected = {
            0: _eboss(*meas, "ngc") & quality["ngc"],
            1: _eboss(*meas, "sgc") & quality["sgc"],
            2: _desi(*meas) & matched & col["tractor_brick_primary"],
            3: _eboss(*true, "ngc"),
            4: _eboss(*true, "sgc"),
            5: _desi(*true),
        }
    mask = col["targets_mask"]
    for bit, want in expected.items():
        got = (mask >> bit) & 1 == 1
        # magnitudes and fluxes differ by rounding only exactly at a cut; allow no disagreement
        assert np.array_equal(got, want), f"bit {bit}: {np.sum(got != want)} rows disagree"
    assert expected[5].sum() > 0 and expected[2].sum() > 0, "simulated production selects some ELGs"


def test_integer_columns_keep_their_dtype(dr5_derived):
    with h5py.File(dr5_derived, "r") as derived:
        randoms = derived["randoms"]
        assert randoms["id"].dtype == np.int64
        assert randoms["tractor_nobs_g"].dtype == np.int16
        assert randoms["tractor_brick_primary"].dtype == np.bool_
        assert randoms["tractor_type"].dtype.kind == "S"
        assert randoms["tractor_dchisq"].shape[1:] == (5,)
        order = randoms.attrs["column_order"].split(",")
        assert sorted(order) == sorted(randoms)
        assert order[:3] == ["unique_id", "brickname", "rsdir"]
        assert all("description" in randoms[name].attrs for name in randoms)
        assert randoms["tractor_flux_g"].attrs["unit"] == "nanomaggy"
        assert not any(name.startswith("tractor_apflux_ivar") for name in randoms)


def test_summary_rows(dr5_derived):
    with h5py.File(dr5_derived, "r") as derived:
        summary = {name: derived["summary"][name][:] for name in derived["summary"]}
        counts = derived["bricks/count"][:]
        mask = derived["randoms/obiwan_mask"][:]
        offsets = derived["bricks/offset"][:]
        names = derived["bricks/name"][:]
    assert np.array_equal(summary["brickname"], names)
    assert np.array_equal(summary["n_inj"], counts)
    for i, (offset, count) in enumerate(zip(offsets, counts)):
        assert summary["n_rec"][i] == np.sum(mask[offset:offset + count] & 1)
    # a real 0.25 deg brick near the equator covers about 0.0625 deg^2, less towards the poles
    assert np.all((summary["brick_area"] > 0.05) & (summary["brick_area"] < 0.0630))
    types = sum(summary[f"n_type_{t}"] for t in ("psf", "simp", "rex", "exp", "dev", "comp"))
    assert np.array_equal(types, summary["n_rec"])
    assert np.all((summary["depth_at_half_recovered_r"] > 21) & (summary["depth_at_half_recovered_r"] < 26))


def _tractor_sources(production, brick):
    total = 0
    for rsdir in production.rsdirs(brick):
        primary = fitsio.read(production.tractor(brick, rsdir), columns=["brick_primary"])["brick_primary"]
        total += int(primary.astype(bool).sum())
    return total


def test_summary_parity_columns(dr5_production, dr5_derived):
    """nobjs counts the Tractor catalogs' primary rows; nexp, nexphist, trans, ext from the rows."""
    production = Production(dr5_production)
    with h5py.File(dr5_derived, "r") as derived:
        summary = {name: derived["summary"][name][:] for name in derived["summary"]}
        rows = {name: derived["randoms"][name][:] for name in ("obiwan_mask", "tractor_nobs_g",
                                                              "tractor_mw_transmission_z")}
        offsets, counts = derived["bricks/offset"][:], derived["bricks/count"][:]
        assert derived["summary/nexphist_r"].attrs["description"].startswith("recovered sources by")
    assert summary["nexphist_g"].shape == (len(counts), 16)
    for i, name in enumerate(summary["brickname"].astype(str)):
        assert summary["nobjs"][i] == _tractor_sources(production, name) > 0
        chosen = slice(offsets[i], offsets[i] + counts[i])
        recovered = (rows["obiwan_mask"][chosen] & 1).astype(bool)
        assert summary["nexp_g"][i] == np.median(rows["tractor_nobs_g"][chosen][recovered])
        assert np.array_equal(summary["nexphist_g"][i], np.bincount(
            np.clip(rows["tractor_nobs_g"][chosen][recovered], 0, 15), minlength=16))
        assert np.isclose(summary["trans_z"][i], np.median(rows["tractor_mw_transmission_z"][chosen][recovered]))
    for band in "grz":
        assert np.array_equal(summary[f"nexphist_{band}"].sum(axis=1), summary["n_rec"])
        assert np.allclose(summary[f"ext_{band}"], -2.5 * np.log10(summary[f"trans_{band}"]))
        assert np.all((summary[f"trans_{band}"] > 0.5) & (summary[f"trans_{band}"] <= 1))


def test_dr3_schema_production_derives(dr3_production, tmp_path):
    output = str(tmp_path / "dr3.h5")
    totals = derive(DeriveOptions(dr3_production, output), SerialComm())
    assert totals["failed"] == 0
    with h5py.File(output, "r") as derived:
        randoms = derived["randoms"]
        assert randoms["tractor_decam_flux"].shape[1:] == (6,)
        mask = randoms["obiwan_mask"][:]
        targets = randoms["targets_mask"][:]
        assert 0 < np.mean(mask & 1) < 1
        assert np.any(targets & 0b111) and np.any(targets & 0b111000)
        assert np.all(derived["summary/n_rec"][:] == [np.sum(mask[o:o + c] & 1) for o, c in
                                                     zip(derived["bricks/offset"][:], derived["bricks/count"][:])])
        # DR3: nexp from decam_nobs[:, 1|2|4]
        nobs = randoms["tractor_decam_nobs"][:]
        for i, (o, c) in enumerate(zip(derived["bricks/offset"][:], derived["bricks/count"][:])):
            recovered = (mask[o:o + c] & 1).astype(bool)
            assert derived["summary/nexp_z"][i] == np.median(nobs[o:o + c, 4][recovered])
            assert derived["summary/nexphist_r"][i].sum() == recovered.sum()
        assert np.all(derived["summary/nobjs"][:] > 0)


def test_failed_and_incomplete_bricks_do_not_stop_the_job(production_copy, tmp_path):
    production = Production(production_copy)
    bricks = [line.strip() for line in open(os.path.join(production_copy, "bricks.txt")) if line.strip()]
    broken, short, dup = bricks[0], bricks[1], bricks[2]
    os.remove(production.tractor(broken, "rs0"))
    shutil.rmtree(production.obiwan_dir(short, "rs1"))
    ids = fitsio.read(production.ids_added(dup, "rs0"))
    fitsio.write(production.ids_added(dup, "rs0"), np.concatenate([ids, ids[:1]]), clobber=True)
    output = str(tmp_path / "out.h5")
    status = main(["derive", "--data-dir", production_copy, "-o", output, "--expect-rsdirs", "2"])
    assert status == 1
    with h5py.File(output, "r") as derived:
        names = [name.decode() for name in derived["bricks/name"][:]]
        state = dict(zip(names, derived["bricks/status"][:]))
        message = dict(zip(names, derived["bricks/message"][:]))
        counts = dict(zip(names, derived["bricks/count"][:]))
        assert derived.attrs["complete"]
    assert state[broken] == FAILED and b"tractor-" in message[broken] and b"not found" in message[broken]
    assert state[short] == INCOMPLETE and b"expected 2" in message[short]
    assert state[dup] == FAILED and b"duplicate id" in message[dup]
    assert counts[broken] == counts[short] == counts[dup] == 0
    assert all(state[name] == DONE for name in bricks[3:])


def test_existing_output_refused_without_overwrite(dr5_production, tmp_path, capsys):
    output = tmp_path / "exists.h5"
    output.write_bytes(b"not hdf5")
    assert main(["derive", "--data-dir", dr5_production, "-o", str(output)]) == 2
    assert "use --overwrite" in capsys.readouterr().err
    assert output.read_bytes() == b"not hdf5"


def test_bad_brick_list_is_refused(dr5_production, tmp_path, capsys):
    bricks = tmp_path / "bricks.txt"
    bricks.write_text("1741p242\n../../etc\n")
    status = main(["derive", "--data-dir", dr5_production, "--bricks", str(bricks), "-o", str(tmp_path / "x.h5")])
    assert status == 2
    err = capsys.readouterr().err
    assert "bricks.txt:2" in err and "not a brick name" in err
    assert not (tmp_path / "x.h5").exists()


def test_resume_redoes_only_unfinished_bricks(dr5_production, dr5_derived, tmp_path):
    output = str(tmp_path / "resume.h5")
    shutil.copy(dr5_derived, output)
    with h5py.File(output, "r+") as derived:
        status = derived["bricks/status"]
        status[1] = 0  # pending: as if the job died before this brick was written
        first, count = derived["bricks/offset"][1], derived["bricks/count"][1]
        derived["randoms/tractor_flux_g"][first:first + count] = -1.0
        derived["randoms/tractor_flux_g"][0] = 12345.0  # a done brick: resume must not touch it
    totals = derive(DeriveOptions(dr5_production, output, resume=True), SerialComm())
    assert totals["bricks"] == 1 and totals["done"] == 1
    with h5py.File(output, "r") as resumed, h5py.File(dr5_derived, "r") as reference:
        assert np.all(resumed["bricks/status"][:] == DONE)
        got = resumed["randoms/tractor_flux_g"][:]
        want = reference["randoms/tractor_flux_g"][:]
        assert got[0] == 12345.0
        assert np.array_equal(got[1:], want[1:], equal_nan=True)


def test_resume_with_other_options_is_refused(dr5_production, dr5_derived, tmp_path):
    from obiwan_h5.errors import JobError

    output = str(tmp_path / "resume.h5")
    shutil.copy(dr5_derived, output)
    with pytest.raises(JobError, match="made with match_radius_arcsec=1.0, now 2.0; cannot resume"):
        derive(DeriveOptions(dr5_production, output, resume=True, match_radius=2.0), SerialComm())


def test_resume_of_a_file_with_other_summary_columns_is_refused(dr5_production, dr5_derived, tmp_path):
    from obiwan_h5.errors import JobError

    output = str(tmp_path / "old.h5")
    shutil.copy(dr5_derived, output)
    with h5py.File(output, "r+") as derived:
        del derived["summary/nexphist_g"]  # as a file made before the parity columns
    with pytest.raises(JobError, match="made by a version with other summary columns; cannot resume"):
        derive(DeriveOptions(dr5_production, output, resume=True), SerialComm())


def test_rows_of_a_brick_follow_the_canonical_rsdir_order(tmp_path):
    """docs/migration.md: the old tables followed the file system's listing of the rsdirs; a
    derived file is ordered by rsdir class, then number (rs9 before rs10, more_* last)."""
    from obiwan_h5.sim.simulate import simulate

    production = str(tmp_path / "production")
    simulate(production, n_bricks=1, rsdirs=["more_rs1", "rs10", "skip_rs0", "rs9"], per_rsdir=20, seed=5)
    output = str(tmp_path / "derived.h5")
    assert derive(DeriveOptions(production, output), SerialComm())["failed"] == 0
    with h5py.File(output, "r") as derived:
        rsdir = derived["randoms/rsdir"][:].astype(str)
        unique_id = derived["randoms/unique_id"][:].astype(str)
    blocks = [name for index, name in enumerate(rsdir) if index == 0 or rsdir[index - 1] != name]
    assert blocks == ["rs9", "rs10", "skip_rs0", "more_rs1"]
    assert blocks != sorted(blocks)
    # inside an rsdir, the simcat's order
    layout = Production(production)
    with open(os.path.join(production, "bricks.txt")) as handle:
        brick = handle.read().split()[0]
    for name in blocks:
        simcat = fitsio.read(layout.simcat(brick, name), columns=["id"])["id"]
        added = fitsio.read(layout.ids_added(brick, name))["id"]
        expected = [f"{i}_{brick}_{name}" for i in simcat[np.isin(simcat, added)]]
        assert list(unique_id[rsdir == name]) == expected
