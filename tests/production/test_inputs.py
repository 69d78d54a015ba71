"""Input readers, against the real Legacy Survey samples and hand-made files."""

import os

import fitsio
import h5py
import numpy as np
import pytest

from obiwan_h5.core.photometry import band_quantity, deextincted_flux
from obiwan_h5.errors import InputError, UnreadableFileError
from obiwan_h5.production.inputs import (
    FitsTable,
    fits_schema,
    primary_tractor,
    read_columns,
    read_survey_bricks,
    read_tractor,
)
from obiwan_h5.production.truth import TruthTable


def test_real_tractor_catalog_upper_case_arrays_and_strings(real_dir):
    path = os.path.join(real_dir, "tractor-3301m002.fits")
    records = read_tractor(path)
    tractor = {name: records[name] for name in records.dtype.names}
    assert "flux_g" in tractor and "FLUX_G" not in tractor
    assert len(tractor["ra"]) == 6  # no brick_primary column: every row kept
    assert tractor["type"].dtype == np.dtype("S4") and tractor["type"][2] == b"REX "
    assert tractor["dchisq"].shape == (6, 5)
    assert tractor["nobs_g"].dtype == np.int16 and tractor["nobs_g"].dtype.isnative
    assert tractor["gaia_duplicated_source"].dtype == np.bool_
    assert tractor["ref_cat"].dtype == np.dtype("S2")
    raw = fitsio.read(path)
    assert np.array_equal(tractor["flux_g"], raw["FLUX_G"])
    # DR8-era catalog: allmask but no anymask, no psfsize
    assert band_quantity(tractor, "anymask", "g") is None
    assert np.array_equal(band_quantity(tractor, "allmask", "z"), raw["ALLMASK_Z"])
    np.testing.assert_allclose(deextincted_flux(tractor, "r"), raw["FLUX_R"] / raw["MW_TRANSMISSION_R"], rtol=1e-6)


def test_real_tractor_schema_from_header(real_dir):
    schema, nrows = fits_schema(os.path.join(real_dir, "tractor-3303p000.fits"))
    assert nrows == 6
    assert schema["dchisq"] == (np.dtype("float32"), (5,))
    assert schema["brickname"][0] == np.dtype("S8")
    assert schema["ra"][0] == np.dtype("float64")


def test_real_randoms_truth_table_lookup(real_dir):
    truth = TruthTable(os.path.join(real_dir, "randoms_elg-testcase_decals_z.fits"))
    assert len(truth) == 4
    rows = truth.lookup([3, 1, 3])
    assert list(rows["id"]) == [3, 1, 3]
    raw = fitsio.read(os.path.join(real_dir, "randoms_elg-testcase_decals_z.fits"))
    np.testing.assert_array_equal(rows["ra"], raw["ra"][[2, 3, 2]])
    with pytest.raises(InputError, match="not in the randoms truth table"):
        truth.lookup([1, 99])


def test_real_survey_bricks(real_dir):
    bounds = read_survey_bricks(os.path.join(real_dir, "survey-bricks-testcase_decals_z.fits.gz"))
    ra, dec, ra1, ra2, dec1, dec2 = bounds["1741p242"]
    assert dec == 24.25 and dec1 == 24.125 and ra1 < ra < ra2


def test_truth_table_from_hdf5(tmp_path):
    path = str(tmp_path / "truth.h5")
    with h5py.File(path, "w") as out:
        out["id"] = np.array([5, 2, 9], dtype=np.int64)
        out["g"] = np.array([22.0, 23.0, 24.0])
    truth = TruthTable(path)
    assert truth.lookup([9, 5])["g"].tolist() == [24.0, 22.0]


def test_truth_table_duplicate_ids_refused(tmp_path):
    path = str(tmp_path / "dup.fits")
    fitsio.write(path, np.array([(1, 2.0), (1, 3.0)], dtype=[("id", "i8"), ("g", "f8")]))
    with pytest.raises(InputError, match="duplicate id 1"):
        TruthTable(path)


def test_not_fits_and_missing_files_name_the_file(tmp_path):
    bad = tmp_path / "simcat.fits"
    bad.write_bytes(b"SIMPLE  = garbage" * 10)
    with pytest.raises(InputError, match="simcat.fits: not a readable FITS file"):
        read_columns(str(bad))
    with pytest.raises(InputError, match="nope.fits: file not found"):
        read_columns(str(tmp_path / "nope.fits"))


def test_errors_of_the_readers_are_raised_once_as_what_they_are(tmp_path):
    """A FITS file fitsio cannot read is an `UnreadableFileError` (an `OSError` too); one it
    reads that holds no table says so, not wrapped in a second message."""
    bad = tmp_path / "simcat.fits"
    bad.write_bytes(b"SIMPLE  = garbage" * 10)
    with pytest.raises(UnreadableFileError) as caught:
        FitsTable(str(bad))
    assert isinstance(caught.value, OSError)
    image = tmp_path / "image.fits"
    fitsio.write(str(image), np.zeros((2, 2), dtype="f4"))
    with pytest.raises(InputError) as caught:
        FitsTable(str(image))
    assert str(caught.value) == f"{image}: no table extension"


def test_missing_required_column(tmp_path):
    path = str(tmp_path / "t.fits")
    fitsio.write(path, np.zeros(2, dtype=[("ID", "i8")]))
    assert read_columns(path, ["id"], required=["id"])["id"].tolist() == [0, 0]
    with pytest.raises(InputError, match="missing column.*ra"):
        read_columns(path, required=["id", "ra"])


def test_apflux_pruned_and_primary_only(tmp_path):
    path = str(tmp_path / "tractor.fits")
    data = np.zeros(3, dtype=[("ra", "f8"), ("dec", "f8"), ("brick_primary", "?"),
                              ("apflux_g", "f4", (8,)), ("apflux_ivar_g", "f4", (8,)), ("apflux_resid_z", "f4", (8,))])
    data["brick_primary"] = [True, False, True]
    data["ra"] = [1, 2, 3]
    fitsio.write(path, data)
    tractor = read_tractor(path)
    assert set(tractor.dtype.names) == {"ra", "dec", "brick_primary", "apflux_g", "apflux_resid_z"}
    assert tractor["ra"].tolist() == [1, 3]
    assert "apflux_ivar_g" in read_tractor(path, keep_all_apflux=True).dtype.names


@pytest.mark.parametrize("name", ["tractor-3301m002.fits", "hand-made"])
def test_primary_tractor_takes_the_records_read_tractor_gives(real_dir, tmp_path, name):
    if name == "hand-made":
        path = str(tmp_path / "tractor.fits")
        data = np.zeros(6, dtype=[("RA", ">f8"), ("DEC", ">f8"), ("BRICK_PRIMARY", "?"), ("NOBS_G", ">i2"),
                                  ("TYPE", "S4"), ("APFLUX_IVAR_G", ">f4", (8,)), ("DCHISQ", ">f4", (5,))])
        data["BRICK_PRIMARY"] = [True, False, True, True, False, True]
        data["RA"], data["NOBS_G"], data["TYPE"] = np.arange(6) + 0.5, np.arange(6) - 2, b"EXP"
        data["DCHISQ"] = np.arange(30).reshape(6, 5)
        fitsio.write(path, data)
    else:
        path = os.path.join(real_dir, name)
    whole = read_tractor(path)
    lazy = primary_tractor(FitsTable(path))
    assert len(lazy) == len(whole) and lazy.dtype == whole.dtype
    assert np.array_equal(lazy["ra"], whole["ra"]) and np.array_equal(lazy["dec"], whole["dec"])
    index = np.array([len(whole) - 1, 0, 1, 1])
    taken, expected = lazy.take(index), whole.take(index)
    for field in whole.dtype.names:
        # native byte order: text and booleans have none, so isnative holds for them too
        assert taken[field].dtype == expected[field].dtype, (field, taken[field].dtype, expected[field].dtype)
        assert taken[field].dtype.isnative, (field, taken[field].dtype)
        assert np.array_equal(taken[field], expected[field]), field
