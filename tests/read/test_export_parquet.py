"""`obiwan-h5 export -o OUT.parquet`: streamed Parquet with the HDF5 names, values, units,
descriptions and bit definitions; `DerivedFile.to_pandas`."""

import glob
import json
import os
import sys

import h5py
import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pd = pytest.importorskip("pandas")

import obiwan_h5  # noqa: E402
from obiwan_h5.cli import main  # noqa: E402
from obiwan_h5.errors import InputError  # noqa: E402
from obiwan_h5.read.export import export, export_format  # noqa: E402
from obiwan_h5.read.export_parquet import export_parquet, summary_path  # noqa: E402
from obiwan_h5.read.reader import DerivedFile  # noqa: E402


def _equal(got, want, name):
    """Every value equal (NaN equal to NaN); text compared as the stored bytes."""
    got = np.asarray(got)
    if want.dtype.kind == "S":
        got = np.array([value.encode() for value in got.ravel()], dtype=want.dtype).reshape(want.shape)
    if want.ndim > 1 and got.dtype == object:
        got = np.stack(got) if len(got) else got.reshape(want.shape)
    assert got.shape == want.shape, name
    assert np.array_equal(got.astype(want.dtype), want, equal_nan=want.dtype.kind == "f"), name


def test_every_column_read_with_pyarrow_and_pandas_equals_the_hdf5_file(dr5_derived, tmp_path):
    output = str(tmp_path / "all.parquet")
    result = export_parquet(dr5_derived, output, batch_rows=97)  # several row groups, the last partial
    table = pq.read_table(output)
    frame = pd.read_parquet(output)
    with h5py.File(dr5_derived, "r") as src:
        order = src["randoms"].attrs["column_order"].split(",")
        assert table.column_names == list(frame.columns) == order == result["columns"]
        assert table.num_rows == len(frame) == len(src["randoms/ra"]) == result["rows"]
        two_d = 0
        for name in order:
            want = src["randoms"][name][:]
            field = table.schema.field(name)
            _equal(table[name].to_numpy(zero_copy_only=False), want, name)
            _equal(frame[name].to_numpy(), want, name)
            if want.ndim == 2:
                two_d += 1
                assert pa.types.is_fixed_size_list(field.type) and field.type.list_size == want.shape[1], name
            elif want.dtype.kind == "S":
                assert field.type == pa.string(), name
            elif want.dtype.kind == "b":
                assert field.type == pa.bool_(), name
            else:
                assert field.type == pa.from_numpy_dtype(want.dtype), name  # same width and signedness
            attrs = src["randoms"][name].attrs
            meta = field.metadata or {}
            assert meta.get(b"unit", b"").decode() == attrs.get("unit", ""), name
            assert meta.get(b"description", b"").decode() == attrs.get("description", ""), name
        assert two_d
        file_attrs = {key: src.attrs[key] for key in ("match_radius_arcsec", "software_version")}
    metadata = json.loads(table.schema.metadata[b"obiwan_h5"])
    assert metadata["attributes"]["match_radius_arcsec"] == float(file_attrs["match_radius_arcsec"])
    assert metadata["attributes"]["software_version"] == file_attrs["software_version"]
    assert metadata["attributes"]["targets_mask_bits"]["desi_elg"]["bit"] == 2
    bits = {(b["mask"], b["bit"]): b["name"] for b in metadata["bit_definitions"]}
    assert bits[("obiwan_mask", 0)] == "recovered" and bits[("targets_mask", 2)] == "desi_elg"
    assert metadata["units"]["tractor_flux_g"] == "nanomaggy"
    assert "inverse variance" in metadata["descriptions"]["tractor_flux_ivar_g"]
    parquet = pq.ParquetFile(output)
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)]
    assert sizes == [97] * (result["rows"] // 97) + ([result["rows"] % 97] if result["rows"] % 97 else [])
    assert result["row_groups"] == len(sizes)


def test_where_bricks_and_two_d_columns_match_the_reader(dr5_derived, tmp_path):
    output = str(tmp_path / "some.parquet")
    where = "obiwan_mask & 1 and tractor_flux_g > 0"
    with obiwan_h5.open(dr5_derived) as derived:
        bricks = derived.bricknames[1:4]
        columns = ["unique_id", "ra", "psql_g", "tractor_apflux_g", "tractor_type", "obiwan_mask"]
        want = derived.read(columns, bricks=bricks, where=where, as_="numpy")
        every = derived.read(columns, bricks=bricks, as_="numpy")
    assert 0 < len(want["ra"]) < len(every["ra"])  # the filter keeps some rows, not all
    result = export_parquet(dr5_derived, output, columns=columns, bricks=bricks, where=where, batch_rows=50)
    table = pq.read_table(output)
    assert table.column_names == columns and result["rows"] == len(want["ra"])
    for name in columns:
        _equal(table[name].to_numpy(zero_copy_only=False), want[name], name)
    # filtered batches are merged: row groups of batch_rows rows, not one per brick range or batch
    parquet = pq.ParquetFile(output)
    sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)]
    assert all(size == 50 for size in sizes[:-1]) and 0 < sizes[-1] <= 50
    assert json.loads(table.schema.metadata[b"obiwan_h5"])["export"]["where"] == where


def test_memory_is_bounded_by_batch_rows(dr5_derived, tmp_path, monkeypatch):
    largest = []
    original = DerivedFile.iter_batches

    def spy(self, *args, **kwargs):
        for batch in original(self, *args, **kwargs):
            largest.append(max((len(v) for v in batch.values()), default=0))
            yield batch

    monkeypatch.setattr(DerivedFile, "iter_batches", spy)
    output = str(tmp_path / "bounded.parquet")
    result = export_parquet(dr5_derived, output, batch_rows=64)
    assert result["rows"] > 64 * 5 and max(largest) <= 64
    parquet = pq.ParquetFile(output)
    assert max(parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)) == 64


def test_summary_and_brick_index_beside_the_export(dr5_derived, tmp_path):
    output = str(tmp_path / "rows.parquet")
    with obiwan_h5.open(dr5_derived) as derived:
        bricks = [derived.bricknames[0], derived.bricknames[2]]
        want = derived.summary(bricks=bricks, as_="numpy")
        index = derived.bricks
        names = derived.summary_columns
    result = export_parquet(dr5_derived, output, bricks=",".join(bricks), summary=True)
    assert result["summary_output"] == summary_path(output) == str(tmp_path / "rows.summary.parquet")
    summary = pq.read_table(result["summary_output"])
    assert summary.column_names[:len(names)] == names and result["summary_rows"] == 2
    for name in names:
        _equal(summary[name].to_numpy(zero_copy_only=False), want[name], name)
    rows = [0, 2]
    for name in ("status", "count", "offset", "checksum"):
        assert summary[name].to_pylist() == index[name][rows].tolist(), name
    assert summary.schema.field("count").metadata[b"description"].startswith(b"rows of the brick")
    assert summary.schema.field("brick_area").metadata[b"unit"] == b"deg^2"
    assert not glob.glob(str(tmp_path / ".*.partial-*"))


def test_command_line_format_choice_alias_and_refusals(dr5_derived, tmp_path, capsys):
    out = str(tmp_path / "x.parquet")
    assert main(["export", dr5_derived, "-o", out, "--columns", "ra,dec", "--summary"]) == 0
    assert pq.read_table(out).column_names == ["ra", "dec"]
    assert os.path.exists(str(tmp_path / "x.summary.parquet"))
    assert "row group" in capsys.readouterr().out
    # the summary file is an output too: not replaced silently
    os.remove(out)
    assert main(["export", dr5_derived, "-o", out, "--summary"]) == 2
    assert "x.summary.parquet: exists" in capsys.readouterr().err and not os.path.exists(out)
    other = str(tmp_path / "table.data")
    assert main(["export", dr5_derived, "-o", other, "--format", "parquet", "--columns", "ra"]) == 0
    assert pq.read_table(other).column_names == ["ra"]
    fits = str(tmp_path / "x.fits")
    assert main(["export", dr5_derived, "-o", fits, "--columns", "ra"]) == 0
    assert main(["export-fits", dr5_derived, "-o", str(tmp_path / "y.fits"), "--columns", "ra"]) == 0
    with open(fits, "rb") as handle:
        assert handle.read(6) == b"SIMPLE"
    # a format that contradicts the suffix is refused: no FITS in a .parquet file, no
    # Parquet in a .fits file (the alias writes FITS, so it refuses a .parquet name)
    odd = str(tmp_path / "odd.parquet")
    capsys.readouterr()
    assert main(["export-fits", dr5_derived, "-o", odd, "--columns", "ra"]) == 2
    assert "the suffix says parquet, but --format is fits" in capsys.readouterr().err
    wrong = str(tmp_path / "wrong.fits")
    assert main(["export-fits", dr5_derived, "-o", wrong, "--columns", "ra", "--format", "parquet"]) == 2
    assert main(["export", dr5_derived, "-o", wrong, "--columns", "ra", "--format", "parquet"]) == 2
    assert "name the output" in capsys.readouterr().err
    assert not os.path.exists(odd) and not os.path.exists(wrong) and not glob.glob(str(tmp_path / ".*partial*"))
    assert main(["export-fits", dr5_derived, "-o", odd, "--columns", "ra", "--format", "parquet"]) == 0
    assert pq.read_table(odd).column_names == ["ra"]
    assert main(["export", dr5_derived, "-o", str(tmp_path / "x.txt")]) == 2
    assert "--format" in capsys.readouterr().err
    assert main(["export", dr5_derived, "-o", str(tmp_path / "x.fits.gz")]) == 2
    assert main(["export", dr5_derived, "-o", str(tmp_path / "bad.parquet"), "--where", "psql_gg < 3"]) == 2
    assert not os.path.exists(str(tmp_path / "bad.parquet")) and not glob.glob(str(tmp_path / ".bad.parquet*"))
    empty = str(tmp_path / "empty.parquet")
    assert main(["export", dr5_derived, "-o", empty, "--columns", "ra,tractor_apflux_g", "--where", "ra > 1000"]) == 0
    assert pq.read_table(empty).num_rows == 0 and pq.read_table(empty).column_names == ["ra", "tractor_apflux_g"]
    assert export_format("a.PARQUET") == "parquet" and export_format("a.fit") == "fits"
    with pytest.raises(InputError, match="`format`"):
        export_format("a.fits", "csv")


def test_without_pyarrow_one_line_saying_what_to_install(dr5_derived, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert main(["export", dr5_derived, "-o", str(tmp_path / "x.parquet")]) == 2
    err = capsys.readouterr().err
    assert "pip install" in err and "pyarrow" in err and "Traceback" not in err
    with pytest.raises(ImportError, match="pyarrow"):
        export(dr5_derived, str(tmp_path / "y.parquet"))


def test_to_pandas_equals_read(dr5_derived):
    where = "obiwan_mask & 1"
    with obiwan_h5.open(dr5_derived) as derived:
        frame = derived.to_pandas(["unique_id", "ra", "tractor_apflux_g", "tractor_type"], where=where)
        want = derived.read(["unique_id", "ra", "tractor_apflux_g", "tractor_type"], where=where, as_="numpy")
    assert list(frame.columns) == ["unique_id", "ra", "tractor_apflux_g", "tractor_type"]
    for name, values in want.items():
        _equal(frame[name].to_numpy(), values, name)
    assert frame.attrs["units"]["ra"] == "deg" and frame.attrs["descriptions"]["ra"]
    assert frame.attrs["obiwan_mask_bits"]["recovered"]["bit"] == 0
    assert isinstance(frame["unique_id"].iloc[0], str)


def test_arrow_memory_peak_follows_batch_rows_not_the_table(dr5_derived, tmp_path):
    """pyarrow's own allocations (not seen by tracemalloc), measured in fresh interpreters."""
    import subprocess

    code = ("import sys, pyarrow as pa\n"
            "from obiwan_h5.read.export_parquet import export_parquet\n"
            "result = export_parquet(sys.argv[1], sys.argv[2], batch_rows=int(sys.argv[3]))\n"
            "print(result['rows'], pa.default_memory_pool().max_memory())\n")
    peaks = {}
    for batch_rows in (64, 1 << 20):
        out = subprocess.run([sys.executable, "-c", code, dr5_derived, str(tmp_path / f"{batch_rows}.parquet"),
                              str(batch_rows)], capture_output=True, text=True, check=True).stdout.split()
        rows, peaks[batch_rows] = int(out[0]), int(out[1])
    assert rows > 64 * 10
    assert peaks[64] * 5 < peaks[1 << 20], peaks
