"""The bits of both masks: one convention, one wording (defined in `fileformat`), files of
the former convention still read; every column whose unit is known has it."""

import json
import os
import shutil

import fitsio
import h5py
import pytest

import obiwan_h5
from obiwan_h5.fileformat import OBIWAN_BITS, TARGET_BITS, TARGET_MASK_BITS, describe, mask_bits_attributes
from obiwan_h5.read.export import export_fits
from obiwan_h5.read.metadata import bit_definitions

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs")


def test_both_masks_store_their_bits_the_same_way(dr5_derived):
    attributes = mask_bits_attributes()
    assert set(attributes) == {"obiwan_mask_bits", "targets_mask_bits"}
    for bits in attributes.values():
        assert all(set(entry) == {"bit", "meaning"} and entry["meaning"] for entry in bits.values())
    assert {name: entry["bit"] for name, entry in attributes["targets_mask_bits"].items()} == TARGET_BITS
    assert {name: entry["bit"] for name, entry in attributes["obiwan_mask_bits"].items()} == {
        name: bit for name, (bit, _) in OBIWAN_BITS.items()}
    with h5py.File(dr5_derived, "r") as handle:  # what the derive job writes
        assert {key: json.loads(handle.attrs[key]) for key in attributes} == attributes


def _old_convention(dr5_derived, tmp_path):
    """A file as earlier versions wrote it: targets_mask_bits keyed by bit number."""
    path = str(tmp_path / "old.h5")
    shutil.copy(dr5_derived, path)
    with h5py.File(path, "r+") as handle:
        handle.attrs["targets_mask_bits"] = json.dumps(
            {str(bit): f"{name}: {meaning}" for name, (bit, meaning) in TARGET_MASK_BITS.items()})
    return path


def test_files_of_the_former_convention_read_the_same(dr5_derived, tmp_path):
    old = _old_convention(dr5_derived, tmp_path)
    with obiwan_h5.open(old) as before, obiwan_h5.open(dr5_derived) as now:
        assert bit_definitions(before.attrs) == bit_definitions(now.attrs)
        assert len(bit_definitions(now.attrs)) == len(OBIWAN_BITS) + len(TARGET_BITS)
    export_fits(old, str(tmp_path / "old.fits"), columns="targets_mask")
    export_fits(dr5_derived, str(tmp_path / "now.fits"), columns="targets_mask")
    headers = [fitsio.read_header(str(tmp_path / name), "RANDOMS") for name in ("old.fits", "now.fits")]
    for bit in range(6):
        assert headers[0][f"TGTBIT{bit}"] == headers[1][f"TGTBIT{bit}"]
    assert headers[0]["TGTBIT2"] == "desi_elg"


def test_one_wording_of_each_bit_in_the_docs():
    """docs/format.md is generated from the file; docs/concepts.md says the same."""
    fmt = open(os.path.join(DOCS, "format.md")).read()
    concepts = open(os.path.join(DOCS, "concepts.md")).read()
    for name, (bit, meaning) in list(OBIWAN_BITS.items()) + list(TARGET_MASK_BITS.items()):
        assert f"| {bit} | {1 << bit} | `{name}` | {meaning} |" in fmt, name
    for name, (bit, meaning) in OBIWAN_BITS.items():
        row = next(line for line in concepts.splitlines() if line.startswith(f"| {bit} | {1 << bit} | {name} |"))
        assert row.startswith(f"| {bit} | {1 << bit} | {name} | {meaning}"), row


# units of Tractor columns on the Legacy Survey DR5 and DR3 catalog pages ("" : none)
CATALOG_UNITS = {
    "ra": "deg", "dec": "deg", "ra_ivar": "1/deg^2", "dec_ivar": "1/deg^2", "bx": "pix", "by": "pix",
    "ebv": "mag", "flux_g": "nanomaggy", "flux_ivar_z": "1/nanomaggy^2", "flux_w1": "nanomaggy",
    "flux_ivar_w4": "1/nanomaggy^2", "apflux_g": "nanomaggy", "apflux_resid_r": "nanomaggy",
    "apflux_ivar_z": "1/nanomaggy^2", "psfsize_g": "arcsec", "psfdepth_r": "1/nanomaggy^2",
    "galdepth_z": "1/nanomaggy^2", "shapeexp_r": "arcsec", "shapedev_r": "arcsec",
    "shapeexp_r_ivar": "1/arcsec^2", "shapedev_r_ivar": "1/arcsec^2", "wise_lc_flux": "nanomaggy",
    "wise_lc_flux_ivar": "1/nanomaggy^2", "wise_lc_mjd": "d",
    # DR3: arrays over DECam ugrizY and WISE W1-W4
    "decam_flux": "nanomaggy", "decam_flux_ivar": "1/nanomaggy^2", "decam_apflux": "nanomaggy",
    "decam_apflux_resid": "nanomaggy", "decam_apflux_ivar": "1/nanomaggy^2", "decam_psfsize": "arcsec",
    "decam_depth": "1/nanomaggy^2", "decam_galdepth": "1/nanomaggy^2", "wise_flux": "nanomaggy",
    "wise_flux_ivar": "1/nanomaggy^2",
}
# no unit on those pages, because they have none
DIMENSIONLESS = ["fracdev", "fracdev_ivar", "shapeexp_e1", "shapedev_e2", "shapeexp_e1_ivar", "shapedev_e2_ivar",
                 "mw_transmission_g", "mw_transmission_w2", "decam_mw_transmission", "wise_mw_transmission",
                 "rchisq_g", "fracflux_r", "fracmasked_z", "fracin_g", "dchisq", "decam_rchi2", "decam_fracflux",
                 "wise_fracflux", "wise_rchi2"]


@pytest.mark.parametrize("column, unit", sorted(CATALOG_UNITS.items()))
def test_every_known_unit_is_given(column, unit):
    assert describe(f"tractor_{column}")[1] == unit


@pytest.mark.parametrize("column", DIMENSIONLESS)
def test_a_quantity_without_unit_says_so(column):
    text, unit = describe(f"tractor_{column}")
    assert unit == "" and text.endswith("(dimensionless)")


def test_truth_and_simcat_quantities_without_unit_say_so():
    for name in ("psql_n", "psql_ba", "psql_e1", "psql_redshift", "n", "e1", "mw_transmission_r"):
        assert describe(name)[1] == "" and "dimensionless" in describe(name)[0], name
    assert describe("psql_g") == ("truth from the randoms table: g", "mag")
