"""`obiwan-h5 subset`: physical copies of chosen columns and bricks."""

import io
import os
import shutil

import h5py
import numpy as np
import pytest

import obiwan_h5
from obiwan_h5.cli import main
from obiwan_h5.errors import InputError
from obiwan_h5.fileformat import DONE, FAILED, INCOMPLETE
from obiwan_h5.job import DeriveOptions, derive
from obiwan_h5.job.mpi import SerialComm
from obiwan_h5.production.layout import Production
from obiwan_h5.progress import ProgressStyle
from obiwan_h5.read.common import sample_bricks
from obiwan_h5.read.subset import make_subset
from obiwan_h5.read.validate import validate


@pytest.fixture(scope="module")
def mixed_derived(dr5_production, tmp_path_factory):
    """A derived file with bricks done, failed when planned (no rows), incomplete, and
    failed while computed (rows kept, filled)."""
    root = tmp_path_factory.mktemp("mixed")
    copy = root / "production"
    shutil.copytree(dr5_production, copy)
    production = Production(str(copy))
    bricks = sorted(line.strip() for line in open(copy / "bricks.txt") if line.strip())
    os.remove(production.tractor(bricks[0], "rs0"))
    shutil.rmtree(production.obiwan_dir(bricks[1], "rs1"))
    with open(production.dr_tractor(bricks[3]), "wb") as handle:
        handle.write(b"not FITS")  # planning only checks that it exists: fails while computing
    output = str(root / "mixed.h5")
    derive(DeriveOptions(str(copy), output, expect_rsdirs=2), SerialComm())
    with h5py.File(output, "r") as handle:
        status, count = handle["bricks/status"][:], handle["bricks/count"][:]
    assert list(status[:4]) == [FAILED, INCOMPLETE, DONE, FAILED] and count[3] > 0 and count[0] == 0
    return output


def _equal(a, b):
    return np.array_equal(a, b, equal_nan=np.asarray(a).dtype.kind == "f")


def test_subset_of_chosen_bricks_is_a_faithful_copy(dr5_derived, tmp_path):
    with h5py.File(dr5_derived, "r") as src:
        names = [name.decode() for name in src["bricks/name"][:]]
    chosen = [names[4], names[1]]  # any order: the subset keeps file order
    output = str(tmp_path / "two.h5")
    result = make_subset(dr5_derived, output, bricks=chosen, batch_rows=100)
    assert result["bricks"] == [names[1], names[4]]
    with h5py.File(dr5_derived, "r") as src, h5py.File(output, "r") as out:
        offset, count = src["bricks/offset"][:], src["bricks/count"][:]
        rows = np.concatenate([np.arange(offset[i], offset[i] + count[i]) for i in (1, 4)])
        assert list(out["randoms"]) == list(src["randoms"])
        assert out["randoms"].attrs["column_order"] == src["randoms"].attrs["column_order"]
        for name, dset in src["randoms"].items():
            copy = out["randoms"][name]
            assert copy.dtype == dset.dtype and copy.shape == (len(rows),) + dset.shape[1:]
            assert dict(copy.attrs) == dict(dset.attrs)
            assert copy.chunks is not None and copy.chunks[0] <= len(rows) and copy.chunks[1:] == dset.chunks[1:]
            assert _equal(copy[:], dset[:][rows])
        assert list(out["bricks/name"][:]) == [n.encode() for n in result["bricks"]]
        assert list(out["bricks/count"][:]) == [count[1], count[4]]
        assert list(out["bricks/offset"][:]) == [0, count[1]]
        assert out["bricks/message"].dtype == src["bricks/message"].dtype
        for name, dset in src["summary"].items():
            assert _equal(out["summary"][name][:], dset[:][[1, 4]])
            assert dict(out["summary"][name].attrs) == dict(dset.attrs)
        for key, value in src.attrs.items():
            assert out.attrs[key] == value
        assert out.attrs["subset_of"] == os.path.abspath(dr5_derived)
        assert out.attrs["subset_bricks"] == f"{names[1]},{names[4]}"
        assert out.attrs["subset_columns"] == src["randoms"].attrs["column_order"]
    assert validate(output) == []
    with obiwan_h5.open(output) as derived:
        assert derived.bricknames == [names[1], names[4]]


def test_brick_sample_is_deterministic(dr5_derived, tmp_path):
    names = [f"{i:04d}p000" for i in range(40)]
    first = sample_bricks(names, 0.1, seed=3)
    assert first == sample_bricks(names, 0.1, seed=3) and len(first) == 4 and first == sorted(first)
    assert any(sample_bricks(names, 0.1, seed=s) != first for s in range(4, 10))
    assert len(sample_bricks(names, 0.001, seed=1)) == 1
    assert sample_bricks(names, 1.0, seed=1) == names
    assert len(sample_bricks(names[:5], 0.5, seed=0)) == 3  # 2.5 rounds half up
    for bad in (0, -0.5, 1.5, float("nan")):
        with pytest.raises(InputError, match="fraction must be in"):
            sample_bricks(names, bad, seed=1)

    output = str(tmp_path / "sample.h5")
    assert main(["subset", dr5_derived, "-o", output, "--sample", "0.34", "--seed", "5"]) == 0
    with h5py.File(output, "r") as out, h5py.File(dr5_derived, "r") as src:
        every = [name.decode() for name in src["bricks/name"][:]]
        assert [n.decode() for n in out["bricks/name"][:]] == sample_bricks(every, 0.34, 5)
        assert out.attrs["sample_fraction"] == 0.34 and out.attrs["seed"] == 5
        assert "subset_bricks" not in out.attrs
    assert validate(output) == []


def test_chosen_columns_copied_in_bounded_batches(dr5_derived, tmp_path, monkeypatch):
    writes = []
    original = h5py.Dataset.__setitem__

    def spy(self, key, value):
        if self.name.startswith("/randoms/"):
            writes.append(len(value))
        return original(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", spy)
    output = str(tmp_path / "cols.h5")
    result = make_subset(dr5_derived, output, columns="ra, tractor_apflux_*", batch_rows=70)
    monkeypatch.undo()
    assert writes and max(writes) <= 70
    with h5py.File(dr5_derived, "r") as src, h5py.File(output, "r") as out:
        assert out["randoms"].attrs["column_order"].split(",") == result["columns"]
        assert result["columns"][0] == "ra" and "tractor_apflux_resid_z" in result["columns"]
        assert set(out["randoms"]) == set(result["columns"])
        assert out["randoms/tractor_apflux_g"].shape == src["randoms/tractor_apflux_g"].shape
        assert _equal(out["randoms/tractor_apflux_g"][:], src["randoms/tractor_apflux_g"][:])
        assert out.attrs["subset_bricks"] == "all"
    assert validate(output) == []


def test_subset_keeps_failed_and_incomplete_bricks_valid(mixed_derived, tmp_path):
    assert validate(mixed_derived) == []
    with h5py.File(mixed_derived, "r") as src:
        names = [name.decode() for name in src["bricks/name"][:]]
    output = str(tmp_path / "mixed-subset.h5")
    make_subset(mixed_derived, output, bricks=names[:4])
    with h5py.File(mixed_derived, "r") as src, h5py.File(output, "r") as out:
        assert list(out["bricks/status"][:]) == list(src["bricks/status"][:4])
        assert list(out["bricks/message"][:]) == list(src["bricks/message"][:4])
        assert out["bricks/count"][3] == src["bricks/count"][3] > 0  # failed with rows: kept
    assert validate(output) == []
    with obiwan_h5.open(output) as derived:  # only the done brick's rows are read
        assert len(derived.read("ra", as_="numpy")["ra"]) == derived.bricks["count"][2]


def test_bricks_from_a_file_or_stdin(dr5_derived, tmp_path, monkeypatch, capsys):
    with h5py.File(dr5_derived, "r") as src:
        names = [name.decode() for name in src["bricks/name"][:]]
    listing = tmp_path / "bricks.txt"
    listing.write_text(f"# two bricks\n{names[2]}\n{names[0]}\n")
    assert main(["subset", dr5_derived, "-o", str(tmp_path / "a.h5"), "--bricks", str(listing)]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{names[5]}\n"))
    assert main(["subset", dr5_derived, "-o", str(tmp_path / "b.h5"), "--bricks", "-", "--columns", "ra"]) == 0
    with h5py.File(tmp_path / "a.h5", "r") as a, h5py.File(tmp_path / "b.h5", "r") as b:
        assert [n.decode() for n in a["bricks/name"][:]] == [names[0], names[2]]
        assert [n.decode() for n in b["bricks/name"][:]] == [names[5]] and list(b["randoms"]) == ["ra"]
    capsys.readouterr()
    typo = names[0][:-1] + ("1" if names[0][-1] != "1" else "2")
    assert main(["subset", dr5_derived, "-o", str(tmp_path / "c.h5"), "--bricks", typo]) == 2
    assert f"unknown brick '{typo}' (did you mean {names[0]}" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse refuses both
        main(["subset", dr5_derived, "-o", str(tmp_path / "c.h5"), "--bricks", names[0], "--sample", "0.5"])
    assert "not allowed with argument --bricks" in capsys.readouterr().err
    assert main(["subset", dr5_derived, "-o", str(tmp_path / "c.h5"), "--seed", "3"]) == 2
    assert "--seed only applies" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "c.h5")


def test_no_partial_output_is_left_behind(dr5_derived, tmp_path, monkeypatch):
    output = str(tmp_path / "out.h5")
    assert main(["subset", dr5_derived, "-o", output, "--columns", "ra"]) == 0
    assert main(["subset", dr5_derived, "-o", output, "--columns", "dec"]) == 2  # exists
    with h5py.File(output, "r") as out:
        assert list(out["randoms"]) == ["ra"]

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("obiwan_h5.read.subset._copy_rows", broken)
    with pytest.raises(RuntimeError, match="^disk full$"):
        make_subset(dr5_derived, output, columns="dec", overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["out.h5"]  # no partial, no reserve
    with h5py.File(output, "r") as out:  # the earlier, complete output is untouched
        assert list(out["randoms"]) == ["ra"]


def test_never_overwrites_the_data_behind_a_view(dr5_derived, tmp_path, capsys):
    from obiwan_h5.read.view import make_view

    data = tmp_path / "derived.h5"
    shutil.copy(dr5_derived, data)
    view = str(tmp_path / "view.h5")
    make_view(str(data), view, "ra")
    size = os.path.getsize(data)
    assert main(["subset", view, "-o", str(data), "--overwrite"]) == 2
    assert "is an input of this command" in capsys.readouterr().err
    assert main(["export-fits", view, "-o", str(data), "--overwrite"]) == 2
    assert os.path.getsize(data) == size and validate(view) == []


def test_demo_makes_a_view_a_sample_and_an_export(dr5_derived, tmp_path, capsys):
    import fitsio

    from obiwan_h5.sim.demo import _reading_products

    output = str(tmp_path / "derived.h5")
    shutil.copy(dr5_derived, output)
    _reading_products(str(tmp_path), output)
    printed = capsys.readouterr().out
    for name in ("view.h5", "sample.h5", "view.fits"):
        assert str(tmp_path / name) in printed and os.path.getsize(tmp_path / name) > 0
    with obiwan_h5.open(str(tmp_path / "view.h5")) as view:
        assert "tractor_flux_g" in view.columns and len(view.columns) < 30
    with h5py.File(tmp_path / "sample.h5", "r") as sample:
        assert len(sample["bricks/name"]) == 1 and sample.attrs["sample_fraction"] == 0.1  # 0.1 x 6 -> 1
    assert validate(str(tmp_path / "sample.h5")) == []
    with fitsio.FITS(str(tmp_path / "view.fits")) as fits:
        assert fits["RANDOMS"].get_nrows() == view.nrows and fits["SUMMARY"].get_nrows() == 6


def test_the_sample_is_the_documented_draw(dr5_derived, tmp_path):
    """docs/reading.md: the bricks at ``numpy.random.default_rng(S).choice(B, k, replace=False)``,
    k = max(1, floor(F * B + 0.5)), in file order; recomputed here for many seeds."""
    names = [f"{i:04d}{'pm'[i % 2]}{i % 7:03d}" for i in range(50)][::-1]  # not in sorted order
    for fraction, seed in [(0.1, 1), (0.1, 2), (0.25, 3), (0.5, 0), (0.37, 12345), (0.01, 7), (0.99, 4)]:
        k = max(1, int(np.floor(fraction * len(names) + 0.5)))
        drawn = np.random.default_rng(seed).choice(len(names), k, replace=False)
        assert sample_bricks(names, fraction, seed) == [names[i] for i in np.sort(drawn)], (fraction, seed)
    output = str(tmp_path / "sample.h5")
    make_subset(dr5_derived, output, sample=0.5, seed=9)
    with obiwan_h5.open(dr5_derived) as derived, obiwan_h5.open(output) as sample:
        every = derived.bricknames
        drawn = np.random.default_rng(9).choice(len(every), int(np.floor(0.5 * len(every) + 0.5)), replace=False)
        assert sample.bricknames == [every[i] for i in np.sort(drawn)]


def test_progress_counts_the_rows_of_the_output_not_rows_times_columns(dr5_derived, tmp_path):
    stream = io.StringIO()
    result = make_subset(dr5_derived, str(tmp_path / "p.h5"), columns="ra,dec,psql_*", sample=0.5, seed=2,
                         batch_rows=100, progress=ProgressStyle(stream=stream, every=0, bar=False))
    lines = stream.getvalue().splitlines()
    assert len(result["columns"]) > 2
    assert lines[-1].startswith(f"subset: {len(result['columns'])}/{len(result['columns'])} columns (100%), "
                                f"{result['rows']} rows,")
    # rows grow with the columns copied, up to the output's rows, never beyond
    counts = [int(line.split(", ")[1].split()[0]) for line in lines]
    assert counts == sorted(counts) and counts[-1] == result["rows"] and counts[0] < result["rows"]
