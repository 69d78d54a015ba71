"""`obiwan-h5 maps` (read.maps, read.maps_output, job.maps with one process): what the maps
hold, on a constructed file whose selection probabilities are known (tests/mapfile.py) and
on a derived demo production, and how healpy and astropy read them."""

import io
import os
import warnings

import fitsio
import h5py
import numpy as np
import pytest
from mapfile import BRICKS, NSIDE, expected, write_map_file

from obiwan_h5.cli import main
from obiwan_h5.core.maps import COUNTS, MAP_COLUMNS
from obiwan_h5.errors import InputError
from obiwan_h5.fileformat import DONE, SELECTIONS
from obiwan_h5.progress import ProgressStyle
from obiwan_h5.read.maps import make_maps
from obiwan_h5.read.view import make_view


@pytest.fixture(scope="module")
def constructed(tmp_path_factory):
    """The constructed file, its expected per-pixel values, and its RING FITS map."""
    directory = tmp_path_factory.mktemp("maps")
    path = str(directory / "constructed.h5")
    per_pixel = write_map_file(path)
    output = str(directory / "maps.fits")
    result = make_maps(path, output, NSIDE)
    return {"path": path, "expected": expected(per_pixel), "fits": output, "result": result, "dir": directory}


def _table(path):
    return fitsio.read(path, ext="MAPS")


def test_the_selection_function_of_each_region_is_recovered_within_the_binomial_error(constructed):
    table, truth = _table(constructed["fits"]), constructed["expected"]
    assert sorted(table["PIXEL"]) == sorted(truth)
    z2 = []
    for row in table:
        want = truth[int(row["PIXEL"])]
        assert row["n_inj"] == want["n"]
        for name in [f"selfunc_{sel}" for sel in SELECTIONS] + ["frac_recovered"]:
            p, measured = want[name], row[name]
            sigma = np.sqrt(p * (1 - p) / want["n"])
            error = row[name.replace("selfunc_", "selfunc_err_") if name.startswith("selfunc") else f"{name}_err"]
            # the map's error is the binomial error of its own estimate: close to the true one
            assert error == pytest.approx(np.sqrt(measured * (1 - measured) / want["n"]))
            assert error == pytest.approx(sigma, rel=0.15)
            assert abs(measured - p) <= 4 * sigma, (row["PIXEL"], name, measured, p)
            z2.append(((measured - p) / sigma) ** 2)
    # the errors are the right size, not just loose: the mean square deviation is ~1
    assert 0.4 < np.mean(z2) < 2.0, np.mean(z2)


def test_counts_summed_over_pixels_equal_the_files_totals_of_done_bricks(constructed):
    table = _table(constructed["fits"])
    with h5py.File(constructed["path"], "r") as handle:
        status, offset, count = (handle["bricks"][name][:] for name in ("status", "offset", "count"))
        done = np.zeros(len(handle["randoms/ra"]), bool)
        for i in np.flatnonzero(status == DONE):
            done[offset[i]:offset[i] + count[i]] = True
        recovered = (handle["randoms/obiwan_mask"][:] & 1)[done] != 0
        targets = handle["randoms/targets_mask"][:][done]
    from obiwan_h5.fileformat import TARGET_BITS

    assert table["n_inj"].sum() == done.sum() == constructed["result"]["rows"]
    assert table["n_rec"].sum() == recovered.sum()
    for sel in SELECTIONS:
        true = (targets & (1 << TARGET_BITS[f"{sel}_true"])) != 0
        meas = (targets & (1 << TARGET_BITS[sel])) != 0
        assert table[f"n_true_{sel}"].sum() == true.sum()
        assert table[f"n_meas_{sel}"].sum() == meas.sum()
        assert table[f"n_both_{sel}"].sum() == (true & meas).sum()
    # the failed brick's pixel never appears, the empty done brick adds nothing
    assert 1600 not in table["PIXEL"]
    assert constructed["result"]["bricks"] == sum(1 for entry in BRICKS.values() if entry[4] == DONE)


def test_imaging_properties_are_injection_weighted_means_of_the_bricks_with_a_value(constructed):
    table, truth = _table(constructed["fits"]), constructed["expected"]
    shared = [row for row in table if len(truth[int(row["PIXEL"])]["bricks"]) == 2]
    assert len(shared) == 1 and shared[0]["n_bricks"] == 2
    for row in table:
        want = truth[int(row["PIXEL"])]
        for name in ("psfsize_r", "ebv"):
            assert row[name] == pytest.approx(want[name], rel=1e-12)
        if np.isnan(want["galdepth_g"]):
            assert np.isnan(row["galdepth_g"])  # the brick without galdepth_g, alone in its pixels
        else:
            assert row["galdepth_g"] == pytest.approx(want["galdepth_g"], rel=1e-12)
        # no summary column for these in the constructed file
        assert np.isnan(row["psfdepth_z"])


def test_completeness_and_contamination_follow_the_counts(constructed):
    table = _table(constructed["fits"])
    for sel in SELECTIONS:
        both, true, meas = (table[f"n_{kind}_{sel}"].astype(float) for kind in ("both", "true", "meas"))
        defined = true > 0
        assert np.allclose(table[f"completeness_{sel}"][defined], both[defined] / true[defined])
        assert np.isnan(table[f"completeness_{sel}"][~defined]).all()
        defined = meas > 0
        assert np.allclose(table[f"contamination_{sel}"][defined], 1 - both[defined] / meas[defined])


def test_healpy_reads_the_partial_sky_fits_map(constructed):
    import healpy  # the test extra has it: the suite checks that healpy reads the maps
    table = _table(constructed["fits"])
    names = list(MAP_COLUMNS)
    selfunc = healpy.read_map(constructed["fits"], partial=True, field=names.index("selfunc_desi_elg"))
    assert len(selfunc) == healpy.nside2npix(NSIDE)
    seen = selfunc != healpy.UNSEEN
    assert sorted(np.flatnonzero(seen)) == sorted(table["PIXEL"])
    assert np.array_equal(selfunc[table["PIXEL"]], table["selfunc_desi_elg"])
    # a tuple of column names too, and the header says RING
    (n_inj, ebv), header = healpy.read_map(constructed["fits"], partial=True, field=("n_inj", "ebv"), h=True)
    assert np.array_equal(n_inj[table["PIXEL"]], table["n_inj"]) and np.array_equal(ebv[table["PIXEL"]], table["ebv"])
    assert dict(header)["ORDERING"] == "RING" and dict(header)["NSIDE"] == NSIDE


def test_a_nested_map_is_the_ring_map_renumbered_and_healpy_reorders_it(constructed, tmp_path):
    import healpy  # the test extra has it: the suite checks that healpy reads the maps
    nested = str(tmp_path / "nest.fits")
    make_maps(constructed["path"], nested, NSIDE, nest=True)
    ring, nest = _table(constructed["fits"]), _table(nested)
    assert fitsio.read_header(nested, ext="MAPS")["ORDERING"] == "NESTED"
    order = np.argsort(healpy.nest2ring(NSIDE, nest["PIXEL"]))
    assert np.array_equal(healpy.nest2ring(NSIDE, nest["PIXEL"])[order], ring["PIXEL"])
    for name in MAP_COLUMNS:
        assert np.array_equal(nest[name][order], ring[name], equal_nan=True), name
    as_ring = healpy.read_map(nested, partial=True, field=0, nest=False)
    assert np.array_equal(as_ring[ring["PIXEL"]], ring["n_inj"])


def test_astropy_reads_units_descriptions_bits_and_provenance(constructed):
    from astropy.io import fits
    from astropy.table import Table

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = Table.read(constructed["fits"])
    assert table.colnames == ["PIXEL"] + list(MAP_COLUMNS)
    assert str(table["galdepth_g"].unit) == "mag" and str(table["psfsize_r"].unit) == "arcsec"
    header = fits.getheader(constructed["fits"], "MAPS")
    for key, value in {"PIXTYPE": "HEALPIX", "ORDERING": "RING", "NSIDE": NSIDE, "INDXSCHM": "EXPLICIT",
                       "OBJECT": "PARTIAL", "COORDSYS": "C", "OBS_NPIX": len(table),
                       "H5FILE": "constructed.h5", "NROWS": constructed["result"]["rows"], "NBRICKS": 4}.items():
        assert header[key] == value, key
    descriptions = {header[f"TTYPE{i}"]: header.get(f"TCOMM{i}") for i in range(1, header["TFIELDS"] + 1)}
    assert all(descriptions.values()) and not any(text.endswith("...") for text in descriptions.values())
    assert header["TGTBIT2"] == "desi_elg"


def test_the_hdf5_maps_hold_the_same_columns_and_facts(constructed, tmp_path):
    output = str(tmp_path / "maps.h5")
    make_maps(constructed["path"], output, NSIDE)
    table = _table(constructed["fits"])
    with h5py.File(output, "r") as handle:
        assert handle.attrs["column_order"].split(",") == ["pixel"] + list(MAP_COLUMNS)
        assert np.array_equal(handle["pixel"][:], table["PIXEL"])
        for name, (_, unit, text) in MAP_COLUMNS.items():
            assert np.array_equal(handle[name][:], table[name], equal_nan=True), name
            assert handle[name].attrs["description"] == text and handle[name].attrs.get("unit", "") == unit
        assert (handle.attrs["nside"], handle.attrs["ordering"], handle.attrs["indxschm"]) == (NSIDE, "RING",
                                                                                              "EXPLICIT")
        assert handle.attrs["format"] == "obiwan_h5_maps" and "desi_elg" in handle.attrs["targets_mask_bits"]


def test_where_and_bricks_choose_the_rows_counted(constructed, tmp_path):
    bright = str(tmp_path / "bright.fits")
    make_maps(constructed["path"], bright, NSIDE, where="psql_r < 22")
    with h5py.File(constructed["path"], "r") as handle:
        psql_r = handle["randoms/psql_r"][:]
        offset, count, status = (handle["bricks"][name][:] for name in ("offset", "count", "status"))
    done = np.concatenate([np.arange(o, o + c) for o, c, s in zip(offset, count, status) if s == DONE])
    assert _table(bright)["n_inj"].sum() == (psql_r[done] < 22).sum()
    one = str(tmp_path / "one.fits")
    result = make_maps(constructed["path"], one, NSIDE, bricks="0500p000,0600p000")
    assert result["bricks"] == 1 and set(_table(one)["PIXEL"]) == {1500, 1501}
    assert fitsio.read_header(one, ext="MAPS")["NBRICKS"] == 1  # the failed brick is not counted


@pytest.mark.parametrize("change, message", [
    ({"nside": 12}, "must be a power of two"),
    ({"nside": 1 << 17}, "must be a power of two"),
    ({"output": "maps.txt"}, "cannot tell the format"),
    ({"bricks": "0300p000,0301p000"}, "unknown brick '0301p000'"),
    ({"where": "psql_q < 1"}, "unknown column 'psql_q'"),
    ({"where": "psql_r <"}, "`where`"),
    ({"batch_rows": 0}, "`batch_rows`"),
])
def test_bad_requests_are_refused_before_any_output(constructed, tmp_path, change, message):
    options = {"nside": NSIDE, "output": "maps.fits", **change}
    output = str(tmp_path / options.pop("output"))
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        make_maps(constructed["path"], output, **options)
    assert os.listdir(tmp_path) == []


def test_a_view_without_the_masks_is_refused_and_an_existing_output_kept(constructed, tmp_path):
    view = str(tmp_path / "view.h5")
    make_view(constructed["path"], view, "ra,dec,obiwan_mask")
    with pytest.raises(InputError, match="targets_mask is not in the file"):
        make_maps(view, str(tmp_path / "maps.fits"), NSIDE)
    with pytest.raises(InputError, match="exists"):
        make_maps(constructed["path"], constructed["fits"], NSIDE)
    assert fitsio.read_header(constructed["fits"], ext="MAPS")["NSIDE"] == NSIDE


def test_a_failed_write_leaves_neither_the_output_nor_a_partial_file(constructed, tmp_path, monkeypatch):
    from obiwan_h5.read import maps_output

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(maps_output, "healpix_keywords", broken)
    with pytest.raises(OSError, match="disk full"):
        make_maps(constructed["path"], str(tmp_path / "maps.fits"), NSIDE)
    assert os.listdir(tmp_path) == []


def test_the_command_line_writes_the_maps_and_shows_progress(constructed, tmp_path, capsys):
    output = str(tmp_path / "cli.fits")
    assert main(["maps", constructed["path"], "-o", output, "--nside", str(NSIDE), "--progress-every", "0"]) == 0
    captured = capsys.readouterr()
    assert f"wrote {output}:" in captured.out and "maps: 4/4 bricks (100%)" in captured.err
    assert _table(output).tobytes() == _table(constructed["fits"]).tobytes()
    assert main(["maps", constructed["path"], "-o", output, "--nside", "3"]) == 2
    assert "obiwan-h5 maps: error: --nside 3: must be a power of two" in capsys.readouterr().err


def test_progress_counts_bricks_and_rows(constructed, tmp_path):
    stream = io.StringIO()
    make_maps(constructed["path"], str(tmp_path / "maps.h5"), NSIDE, batch_rows=4000,
              progress=ProgressStyle(stream=stream, every=0, bar=False))
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("maps: 0/4 bricks") or lines[0].startswith("maps: 1/4 bricks")
    assert lines[-1].startswith("maps: 4/4 bricks (100%), 27000 rows") and lines[-1].endswith("finished")


def test_maps_of_a_derived_production_agree_with_its_summary_and_its_view(dr5_derived, tmp_path):
    import obiwan_h5

    output = str(tmp_path / "maps.fits")
    make_maps(dr5_derived, output, 256)
    table = _table(output)
    with obiwan_h5.open(dr5_derived) as derived:
        summary = derived.summary(["n_inj", "n_rec"] + [f"n_true_{sel}" for sel in SELECTIONS]
                                  + [f"n_true_rec_meas_{sel}" for sel in SELECTIONS], as_="numpy")
    assert table["n_inj"].sum() == summary["n_inj"].sum() > 0
    assert table["n_rec"].sum() == summary["n_rec"].sum()
    for sel in SELECTIONS:
        assert table[f"n_true_{sel}"].sum() == summary[f"n_true_{sel}"].sum()
        assert table[f"n_both_{sel}"].sum() == summary[f"n_true_rec_meas_{sel}"].sum()
    assert np.isfinite(table["galdepth_g"]).all() and np.isfinite(table["ebv"]).all()
    view = str(tmp_path / "view.h5")
    make_view(dr5_derived, view, "ra,dec,obiwan_mask,targets_mask")
    from_view = str(tmp_path / "from-view.fits")
    make_maps(view, from_view, 256)
    assert _table(from_view).tobytes() == table.tobytes()


def test_every_count_is_a_column_and_every_description_fits_a_card():
    assert set(COUNTS) <= set(MAP_COLUMNS)
    assert all(len(text) + text.count("'") <= 68 for _, _, text in MAP_COLUMNS.values())


def test_docs_maps_describes_every_column():
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "maps.md"), encoding="utf-8") as handle:
        text = handle.read()
    for name in ["PIXEL"] + list(MAP_COLUMNS):
        generic = name
        for sel in SELECTIONS:
            generic = generic.replace(sel, "<sel>")
        assert f"`{generic}`" in text, name
