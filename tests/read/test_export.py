"""`obiwan-h5 export-fits`: streamed FITS tables with the HDF5 names, dtypes and units."""

import os
import shutil
import subprocess
import warnings

import fitsio
import h5py
import numpy as np
import pytest

import obiwan_h5
from obiwan_h5.cli import main
from obiwan_h5.read.export import export_fits
from obiwan_h5.read.metadata import fits_unit
from obiwan_h5.read.reader import DerivedFile


def _same_dtype(fits_dtype, h5_dtype):
    """dtypes equal up to byte order (FITS is big-endian); strings compared by width."""
    if h5_dtype.kind == "S":
        width = fits_dtype.itemsize // (4 if fits_dtype.kind == "U" else 1)  # fitsio reads text as str
        return fits_dtype.kind in "SU" and width == h5_dtype.itemsize
    return fits_dtype.newbyteorder("=") == h5_dtype.newbyteorder("=")


def test_round_trip_of_every_column_and_the_summary(dr5_derived, tmp_path):
    output = str(tmp_path / "all.fits")
    result = export_fits(dr5_derived, output, summary=True)
    with h5py.File(dr5_derived, "r") as src, fitsio.FITS(output) as fits:
        order = src["randoms"].attrs["column_order"].split(",")
        hdu = fits["RANDOMS"]
        assert hdu.get_extname() == "RANDOMS" and hdu.get_colnames() == order == result["columns"]
        header = hdu.read_header()
        table = hdu.read()
        assert len(table) == len(src["randoms/ra"]) == result["rows"]
        kinds = set()
        for number, name in enumerate(order, 1):
            dset = src["randoms"][name]
            values, expected = table[name], dset[:]
            assert _same_dtype(values.dtype.base, dset.dtype), name
            assert values.shape == expected.shape, name  # 2-D columns are vector columns
            if dset.dtype.kind == "S":
                assert header[f"TFORM{number}"].strip() == f"{dset.dtype.itemsize}A"
                assert np.array_equal(np.char.encode(values) if values.dtype.kind == "U" else values, expected)
            else:
                assert np.array_equal(values, expected, equal_nan=dset.dtype.kind == "f"), name
            assert header.get(f"TUNIT{number}", "").strip() == fits_unit(dset.attrs.get("unit", "")), name
            kinds.add(dset.dtype.str.lstrip("<>|="))
        # the file has every kind the export must keep exact
        assert {"b1", "u1", "i2", "i4", "i8", "f4", "f8"} <= kinds and any(k.startswith("S") for k in kinds)
        assert header["TFORM" + str(order.index("tractor_brick_primary") + 1)].strip() == "L"
        assert header["TFORM" + str(order.index("obiwan_mask") + 1)].strip() == "B"
        assert header["TFORM" + str(order.index("tractor_apflux_g") + 1)].strip() == "8E"
        assert "inverse variance" in header["TCOMM" + str(order.index("tractor_flux_ivar_g") + 1)]

        summary = fits["SUMMARY"]
        header = summary.read_header()
        rows = summary.read()
        names = src["summary"].attrs["column_order"].split(",")
        # the summary columns, then the brick index of each brick, as in the Parquet summary
        index = ["status", "message", "count", "offset", "checksum"]
        assert summary.get_colnames() == names + index
        assert len(rows) == len(src["bricks/name"]) == result["summary_rows"]
        for number, name in enumerate(names + index, 1):
            dset = src["summary"][name] if name in names else src["bricks"][name]
            if dset.dtype.kind == "S":
                assert np.array_equal(np.char.encode(rows[name]), dset[:])
            else:
                assert np.array_equal(rows[name], dset[:], equal_nan=True)
            assert header.get(f"TUNIT{number}", "").strip() == fits_unit(dset.attrs.get("unit", ""))
        assert header[f"TCOMM{len(names) + index.index('status') + 1}"].startswith("0 pending, 1 done")


def test_where_and_bricks_select_rows(dr5_derived, tmp_path):
    with obiwan_h5.open(dr5_derived) as derived:
        bricks = derived.bricknames[1:3]
        where = "obiwan_mask & 1 and psql_g < 23.5"
        expected = derived.read("unique_id,tractor_flux_g", bricks=bricks, where=where, as_="numpy")
        summary = derived.summary("brickname,n_rec", bricks=bricks, as_="numpy")
    output = str(tmp_path / "part.fits")
    assert main(["export-fits", dr5_derived, "-o", output, "--columns", "unique_id tractor_flux_g",
                 "--bricks", ",".join(bricks), "--where", where, "--summary"]) == 0
    table = fitsio.read(output, ext="RANDOMS")
    assert 0 < len(table) < sum(summary["n_rec"]) + 1
    assert np.array_equal(np.char.encode(table["unique_id"]), expected["unique_id"])
    assert np.array_equal(table["tractor_flux_g"], expected["tractor_flux_g"])
    assert [name.strip() for name in fitsio.read(output, ext="SUMMARY")["brickname"]] == bricks


@pytest.mark.parametrize("writer", ["direct", "fitsio"])
def test_rows_are_streamed_in_bounded_batches(dr5_derived, tmp_path, monkeypatch, writer):
    """Both ways of writing the rows (straight to the file, or through fitsio for columns
    only fitsio can convert) take them batch by batch."""
    asked, appended = [], []
    iter_batches = DerivedFile.iter_batches

    def spy_batches(self, *args, **kwargs):
        asked.append(kwargs.get("batch_rows"))
        return iter_batches(self, *args, **kwargs)

    import obiwan_h5.read.export_fits as module

    if writer == "direct":
        stored_rows = module._stored_rows  # each batch's rows, as written to the file

        def spy_rows(batch, chosen, stored, nrows):
            appended.append(nrows)
            return stored_rows(batch, chosen, stored, nrows)

        monkeypatch.setattr(module, "_stored_rows", spy_rows)
    else:
        append = fitsio.hdu.TableHDU.append

        def spy_append(self, data, *args, **kwargs):
            appended.append(len(data))
            return append(self, data, *args, **kwargs)

        monkeypatch.setattr(module, "_stored_dtype", lambda dtype: None)
        monkeypatch.setattr(fitsio.hdu.TableHDU, "append", spy_append)
    monkeypatch.setattr(DerivedFile, "iter_batches", spy_batches)
    output = str(tmp_path / "batched.fits")
    result = export_fits(dr5_derived, output, columns="ra,tractor_apflux_*", batch_rows=250)
    assert asked == [250]
    assert len(appended) > 4 and max(appended) <= 250 and sum(appended) == result["rows"]
    assert fitsio.read_header(output, ext="RANDOMS")["NAXIS2"] == result["rows"]


def test_empty_selection_writes_a_valid_empty_table(dr5_derived, tmp_path):
    output = str(tmp_path / "empty.fits")
    result = export_fits(dr5_derived, output, columns="unique_id,ra,tractor_apflux_g", where="ra > 1000")
    assert result["rows"] == 0
    with fitsio.FITS(output) as fits:
        hdu = fits["RANDOMS"]
        assert hdu.get_nrows() == 0 and hdu.get_colnames() == ["unique_id", "ra", "tractor_apflux_g"]
        header = hdu.read_header()
        assert header["TUNIT2"].strip() == "deg" and header["TFORM3"].strip() == "8E"


def test_bad_input_is_refused_without_output(dr5_derived, tmp_path, capsys):
    output = str(tmp_path / "out.fits")
    assert main(["export-fits", dr5_derived, "-o", output, "--where", "psql_gg < 3"]) == 2
    assert "unknown column 'psql_gg' in --where (did you mean psql_g" in capsys.readouterr().err
    assert main(["export-fits", dr5_derived, "-o", output, "--where", "ra <"]) == 2
    assert "cannot parse --where" in capsys.readouterr().err
    assert main(["export-fits", dr5_derived, "-o", output, "--where", "__import__('os')"]) == 2
    assert main(["export-fits", dr5_derived, "-o", output, "--columns", "flux_g"]) == 2
    assert "unknown column 'flux_g'" in capsys.readouterr().err
    assert main(["export-fits", dr5_derived, "-o", output, "--batch-rows", "0"]) == 2
    assert os.listdir(tmp_path) == []
    assert main(["export-fits", dr5_derived, "-o", output, "--columns", "ra"]) == 0
    assert main(["export-fits", dr5_derived, "-o", output, "--columns", "dec"]) == 2
    assert "exists; use --overwrite" in capsys.readouterr().err
    assert fitsio.FITS(output)["RANDOMS"].get_colnames() == ["ra"]
    assert main(["export-fits", dr5_derived, "-o", output, "--columns", "dec", "--overwrite"]) == 0
    assert fitsio.FITS(output)["RANDOMS"].get_colnames() == ["dec"]
    assert os.listdir(tmp_path) == ["out.fits"]


@pytest.mark.parametrize("columns", ["ra,dec", None])
def test_export_of_a_view(dr5_derived, tmp_path, columns):
    from obiwan_h5.read.view import make_view

    view = str(tmp_path / "view.h5")
    make_view(dr5_derived, view, "unique_id,ra,dec")
    output = str(tmp_path / "view.fits")
    export_fits(view, output, columns=columns, summary=True)
    with fitsio.FITS(output) as fits, h5py.File(dr5_derived, "r") as src:
        assert fits["RANDOMS"].get_colnames() == (columns.split(",") if columns else ["unique_id", "ra", "dec"])
        assert np.array_equal(fits["RANDOMS"].read(columns=["dec"])["dec"], src["randoms/dec"][:])
        assert fits["SUMMARY"].get_nrows() == len(src["bricks/name"])


def test_the_fits_header_defines_the_bits_and_the_provenance(dr5_derived, tmp_path):
    output = str(tmp_path / "bits.fits")
    export_fits(dr5_derived, output, columns="ra,obiwan_mask,targets_mask", summary=True)
    with h5py.File(dr5_derived, "r") as src:
        attrs = dict(src.attrs)
    header = fitsio.read_header(output, "RANDOMS")
    assert header["OBWBIT0"] == "recovered" and header["OBWBIT1"] == "on_real_source"
    assert [header[f"TGTBIT{bit}"] for bit in range(6)] == [
        "eboss_ngc", "eboss_sgc", "desi_elg", "eboss_ngc_true", "eboss_sgc_true", "desi_elg_true"]
    comments = " ".join(str(record["comment"]) for record in header.records() if record["name"] == "COMMENT")
    comments = " ".join(comments.split())
    assert "obiwan_mask bit 0 (value 1) recovered: a brick_primary Tractor source" in comments
    assert "targets_mask bit 2 (value 4) desi_elg: recovered source passing the DESI ELG" in comments
    # the masks' descriptions point to what the FITS file holds, not to an HDF5 attribute
    assert "OBWBITn" in header["TCOMM2"] and "TGTBITn" in header["TCOMM3"]
    assert header["MATCHRAD"] == float(attrs["match_radius_arcsec"])
    assert header["H5SWVER"] == attrs["software_version"] and header["H5DATE"] == attrs["creation_time"]
    if shutil.which("fitsverify"):
        run = subprocess.run(["fitsverify", "-q", output], capture_output=True, text=True)
        assert run.returncode == 0 and "verification OK" in run.stdout, run.stdout + run.stderr


def test_astropy_reads_the_export_without_warnings_with_the_documented_recipe(dr5_derived, tmp_path):
    import astropy.units as u
    from astropy.table import Table

    output = str(tmp_path / "all.fits")
    export_fits(dr5_derived, output, summary=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = Table.read(output, hdu="RANDOMS", unit_parse_strict="silent")  # docs/reading.md
        summary = Table.read(output, hdu="SUMMARY", unit_parse_strict="silent")
        # every standard unit parses; the nanomaggy ones parse with astropy's generic parser
        assert table["ra"].unit == u.deg and table["tractor_ra_ivar"].unit == u.deg ** -2
        assert summary["brick_area"].unit == u.deg ** 2
        with h5py.File(dr5_derived, "r") as source:
            stored = {name: source["randoms"][name].attrs.get("unit", "") for name in table.colnames}
        assert sum(bool(unit) for unit in stored.values()) > 40
        for column in table.itercols():
            if not stored[column.name]:
                assert column.unit is None, column.name
                continue
            parsed = u.Unit(str(column.unit))  # raises if astropy's generic parser cannot read it
            assert not isinstance(parsed, u.UnrecognizedUnit) and parsed == u.Unit(stored[column.name]), column.name
        assert u.Unit(str(table["tractor_flux_ivar_g"].unit)) == u.nanomaggy ** -2


@pytest.mark.parametrize("columns, where", [(["ra"], "psql_g < 23"), ("dec,ra", "obiwan_mask & 1 and psql_g < 23")])
def test_fits_export_holds_exactly_the_columns_asked(dr5_derived, tmp_path, columns, where):
    output = str(tmp_path / "some.fits")
    export_fits(dr5_derived, output, columns=columns, where=where, batch_rows=100)
    with obiwan_h5.open(dr5_derived) as derived:
        want = derived.read(columns, where=where, as_="numpy")
    with fitsio.FITS(output) as fits:
        assert fits["RANDOMS"].get_colnames() == list(want)
        assert fits["RANDOMS"].get_nrows() == len(want["ra"]) > 0


def test_export_sample_is_the_documented_draw_of_the_chosen_bricks(dr5_derived, tmp_path):
    """docs/reading.md: ``--sample F --seed S`` keeps the chosen bricks at the positions
    ``numpy.random.default_rng(S).choice(B, k, replace=False)``, k = max(1, floor(F * B + 0.5))."""
    with obiwan_h5.open(dr5_derived) as derived:
        chosen = derived.bricknames[1:]
    drawn = np.random.default_rng(11).choice(len(chosen), 3, replace=False)  # k = floor(2.5 + 0.5)
    output = str(tmp_path / "sample.fits")
    export_fits(dr5_derived, output, columns="ra", bricks=",".join(chosen[::-1]), sample=0.5, seed=11, summary=True)
    exported = [name.strip() for name in fitsio.read(output, ext="SUMMARY")["brickname"]]
    assert exported == [chosen[i] for i in np.sort(drawn)]


@pytest.mark.parametrize("where, batch_rows", [(None, 100_000), ("psql_g < 23", 97), ("psql_g > 99", 1000)])
def test_rows_written_past_fitsio_are_the_bytes_fitsio_writes(dr5_derived, tmp_path, monkeypatch, where, batch_rows):
    """The table's rows go straight to the file in FITS's own bytes (big-endian, logicals as
    T and F, strings NUL-padded), its NAXIS2 set after the last batch: the file is the one
    fitsio writes, byte for byte, whole and filtered, in one batch or many, and empty."""
    import obiwan_h5.read.export_fits as module

    direct, through = tmp_path / "direct.fits", tmp_path / "fitsio.fits"
    written = export_fits(dr5_derived, str(direct), where=where, batch_rows=batch_rows, summary=True)
    monkeypatch.setattr(module, "_stored_dtype", lambda dtype: None)
    export_fits(dr5_derived, str(through), where=where, batch_rows=batch_rows, summary=True)
    assert direct.read_bytes() == through.read_bytes()
    with fitsio.FITS(str(direct)) as fits:
        assert fits["RANDOMS"].get_nrows() == written["rows"]
        assert fits["SUMMARY"].get_nrows() == written["summary_rows"]
    assert (written["rows"] == 0) == (where == "psql_g > 99")


def test_columns_only_fitsio_can_convert_go_through_fitsio():
    """Unsigned integers wider than a byte and signed bytes are stored with an offset
    (TZERO) that fitsio applies: such a table is appended through fitsio."""
    from obiwan_h5.read.export_fits import _stored_dtype

    assert _stored_dtype(np.dtype([("a", "<f4"), ("b", "<u2")])) is None
    assert _stored_dtype(np.dtype([("a", "i1")])) is None
    stored = _stored_dtype(np.dtype([("a", "<f4", (3,)), ("b", "?"), ("c", "S5"), ("d", "u1"), ("e", "<i8")]))
    assert stored == np.dtype([("a", ">f4", (3,)), ("b", "u1"), ("c", "S5"), ("d", "u1"), ("e", ">i8")])
