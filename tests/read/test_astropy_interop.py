"""astropy stays intact after ``import obiwan_h5``; its ``obiwan_h5`` format reads the
file's attributes into ``Table.meta`` and every column's unit and description, silently."""

import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest
from astropy.io import registry
from astropy.table import Table

import obiwan_h5
from obiwan_h5.read.astropy_io import identify
from obiwan_h5.read.metadata import bit_definitions, fits_unit


def _sample():
    table = Table({"a": np.arange(5), "b": np.linspace(0, 1, 5), "c": np.array([b"x", b"yy", b"z", b"v", b"w"])})
    table["b"].unit = "deg"
    table.meta["comment"] = "kept"
    return table


def _same(left, right):
    assert left.colnames == right.colnames
    for name in left.colnames:
        assert np.array_equal(np.asarray(left[name]), np.asarray(right[name])), name
        assert left[name].unit == right[name].unit, name


def test_astropy_hdf5_with_path_keyword_still_works(tmp_path):
    assert "obiwan_h5" in registry.get_formats(Table)["Format"]  # the format is registered here
    path = str(tmp_path / "plain.h5")
    table = _sample()
    table.write(path, path="data", serialize_meta=True)
    table.write(path, path="more/data2", append=True, serialize_meta=True)
    _same(Table.read(path, path="data"), table)
    _same(Table.read(path, path="more/data2"), table)
    assert Table.read(path, path="data").meta["comment"] == "kept"
    # an HDF5 file that is not a derived file is astropy's alone
    assert registry.identify_format("read", Table, path, None, [], {"path": "data"}) == ["hdf5"]
    with h5py.File(path, "r") as handle:  # astropy also reads open h5py objects
        _same(Table.read(handle, path="data"), table)


@pytest.mark.parametrize("suffix", [".fits", ".ecsv"])
def test_astropy_fits_and_ecsv_round_trips(tmp_path, suffix):
    path = str(tmp_path / f"plain{suffix}")
    table = _sample()
    table.write(path)
    back = Table.read(path)
    back["c"] = back["c"].astype(table["c"].dtype)  # text comes back as str: astropy's own doing
    _same(back, table)


def test_the_same_in_a_fresh_interpreter_with_and_without_the_package(tmp_path):
    code = ("import sys\n"
            "if sys.argv[1] == 'with': import obiwan_h5\n"
            "from astropy.table import Table\n"
            "t = Table({'a': [1, 2, 3]})\n"
            "t.write(sys.argv[2], path='data', overwrite=True)\n"
            "t.write(sys.argv[2] + '.ecsv', overwrite=True)\n"
            "t.write(sys.argv[2] + '.fits', overwrite=True)\n"
            "print(Table.read(sys.argv[2], path='data')['a'].tolist(), Table.read(sys.argv[2] + '.ecsv')['a'].tolist(),"
            " Table.read(sys.argv[2] + '.fits')['a'].tolist())\n")
    outputs = [subprocess.run([sys.executable, "-c", code, which, str(tmp_path / f"{which}.h5")],
                              capture_output=True, text=True, check=True).stdout for which in ("without", "with")]
    assert outputs[0] == outputs[1] == "[1, 2, 3] [1, 2, 3] [1, 2, 3]\n"


def test_identify_claims_only_derived_files_for_reading(dr5_derived, tmp_path):
    other = str(tmp_path / "other.h5")
    with h5py.File(other, "w") as handle:
        handle["x"] = [1]
    text = tmp_path / "text.txt"
    text.write_text("not hdf5")
    assert identify("read", dr5_derived, None)
    assert not identify("read", dr5_derived, None, path="data")  # astropy's hdf5 dataset: not ours
    # astropy's hdf5 reader on a derived file, with `path=`, reads that dataset
    plain = Table.read(dr5_derived, path="bricks/count")
    with h5py.File(dr5_derived, "r") as handle:
        count = handle["bricks/count"]
        assert plain.meta["description"] == count.attrs["description"]
        assert np.array_equal(np.ravel(plain.as_array().tolist()), count[:])
    assert not identify("write", dr5_derived, None)
    assert not identify("read", other, None)
    assert not identify("read", str(text), None)
    assert not identify("read", None, None)
    with open(dr5_derived, "rb") as handle:
        assert identify("read", None, handle) and handle.tell() == 0


def test_meta_units_and_descriptions_without_warnings(dr5_derived):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        via_astropy = Table.read(dr5_derived, format="obiwan_h5")
        with obiwan_h5.open(dr5_derived) as derived:
            via_open = derived.read()
            summary = derived.summary()
        with h5py.File(dr5_derived, "r") as raw:
            attrs = dict(raw.attrs)
            for group, table in (("randoms", via_astropy), ("randoms", via_open), ("summary", summary)):
                for name in table.colnames:
                    dset = raw[group][name]
                    assert table[name].description == dset.attrs.get("description", ""), name
                    unit = dset.attrs.get("unit", "")
                    assert (table[name].unit is not None) == bool(unit), name
    for table in (via_astropy, via_open, summary):
        meta = table.meta
        assert meta["format"] == "obiwan_h5" and meta["match_radius_arcsec"] == float(attrs["match_radius_arcsec"])
        assert meta["software_version"] == attrs["software_version"]
        assert meta["obiwan_mask_bits"]["recovered"]["bit"] == 0  # JSON decoded
        assert meta["targets_mask_bits"]["desi_elg"]["bit"] == 2
        assert isinstance(meta["inputs"], dict)
    assert str(via_astropy["tractor_flux_g"].unit) == "nmgy"
    assert via_astropy["tractor_flux_ivar_g"].unit.to_string() == "1 / nmgy2"
    assert str(summary["brick_area"].unit) == "deg2"


def test_bit_definitions_and_fits_units(dr5_derived):
    with h5py.File(dr5_derived, "r") as raw:
        bits = bit_definitions(raw.attrs)
    assert bits[0] == ("obiwan_mask", 0, "recovered", bits[0][3]) and "match radius" in bits[0][3]
    assert [(mask, bit) for mask, bit, _, _ in bits] == [("obiwan_mask", 0), ("obiwan_mask", 1)] + [
        ("targets_mask", bit) for bit in range(6)]
    assert bits[4][2] == "desi_elg"
    assert [fits_unit(u) for u in ("deg", "deg^2", "1/deg^2", "nanomaggy", "1/nanomaggy^2", "")] == [
        "deg", "deg2", "deg-2", "nanomaggy", "1/nanomaggy^2", ""]
