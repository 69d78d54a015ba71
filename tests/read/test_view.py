"""`obiwan-h5 view`: column views through relative external links."""

import io
import os
import shutil

import h5py
import numpy as np
import pytest
from astropy.table import Table

import obiwan_h5
from obiwan_h5.cli import main
from obiwan_h5.errors import InputError
from obiwan_h5.listfiles import brick_names as read_brick_spec
from obiwan_h5.read.common import open_derived
from obiwan_h5.read.view import make_view

COLUMNS = "unique_id,ra,dec,obiwan_mask,tractor_flux_*,tractor_apflux_g"


@pytest.fixture
def placed(dr5_derived, tmp_path):
    """A private copy of the derived file in tmp/place/, and a views/ directory beside it."""
    place = tmp_path / "place"
    (place / "views").mkdir(parents=True)
    shutil.copy(dr5_derived, place / "derived.h5")
    return place


def test_view_links_columns_without_copying(placed):
    source, view = str(placed / "derived.h5"), str(placed / "views" / "v.h5")
    info = make_view(source, view, COLUMNS)
    assert info["view_of"] == os.path.join("..", "derived.h5")
    with h5py.File(source, "r") as src, h5py.File(view, "r") as out:
        chosen = out["randoms"].attrs["column_order"].split(",")
        assert chosen[:4] == ["unique_id", "ra", "dec", "obiwan_mask"] and "tractor_flux_g" in chosen
        assert chosen[-1] == "tractor_apflux_g" and "tractor_flux_ivar_g" in chosen
        for name in chosen:
            link = out["randoms"].get(name, getlink=True)
            assert isinstance(link, h5py.ExternalLink)
            assert link.filename == "../derived.h5" and link.path == f"/randoms/{name}"
            # the linked object is the input's dataset, attributes and all
            assert dict(out["randoms"][name].attrs) == dict(src["randoms"][name].attrs)
            values = src["randoms"][name][:]
            assert np.array_equal(out["randoms"][name][:], values, equal_nan=values.dtype.kind == "f")
        for group in ("bricks", "summary"):
            assert isinstance(out.get(group, getlink=True), h5py.ExternalLink)
        for key, value in src.attrs.items():
            assert out.attrs[key] == value
        assert out.attrs["view_of"] == "../derived.h5"
        assert out.attrs["view_columns"] == ",".join(chosen)
    # no data is copied: a view is a few KiB whatever the size of the input
    assert os.path.getsize(view) < 64 * 1024 < os.path.getsize(source)
    assert not [name for name in os.listdir(os.path.dirname(view)) if ".partial-" in name or ".reserve-" in name]


def test_view_reads_like_the_input(placed):
    source, view = str(placed / "derived.h5"), str(placed / "views" / "v.h5")
    make_view(source, view, "ra dec psql_g obiwan_mask")
    with obiwan_h5.open(source) as full, obiwan_h5.open(view) as part:
        assert part.columns == ["ra", "dec", "psql_g", "obiwan_mask"]
        assert part.nrows == full.nrows and part.bricknames == full.bricknames
        where = "obiwan_mask & 1 and psql_g < 23"
        assert np.array_equal(part.read("ra", where=where, as_="numpy")["ra"],
                              full.read("ra", where=where, as_="numpy")["ra"])
        assert part.column_info("ra")["unit"] == "deg"
        assert np.array_equal(part.summary("n_rec")["n_rec"], full.summary("n_rec")["n_rec"])
        with pytest.raises(KeyError, match="unknown column 'tractor_flux_g'"):
            part.read("tractor_flux_g")  # not in the view
    table = Table.read(view, format="obiwan_h5", columns=["ra", "dec"])
    assert len(table) == part.nrows and str(table["ra"].unit) == "deg"


def test_moved_together_the_view_works_from_any_directory(placed, tmp_path, monkeypatch):
    make_view(str(placed / "derived.h5"), str(placed / "views" / "v.h5"), "ra,dec")
    with h5py.File(placed / "derived.h5", "r") as src:
        ra = src["randoms/ra"][:]
    moved = tmp_path / "moved"
    shutil.move(str(placed), str(moved))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # a decoy with the input's name in the current directory must not be picked up: HDF5
    # tries the directory of the view before the current directory
    with h5py.File("derived.h5", "w") as decoy:
        decoy["randoms/ra"] = np.zeros(3)
    for path in (str(moved / "views" / "v.h5"), os.path.join("..", "moved", "views", "v.h5")):
        with h5py.File(path, "r") as view:
            assert np.array_equal(view["randoms/ra"][:], ra)
            assert len(view["bricks/name"]) > 0
        with obiwan_h5.open(path) as derived:
            assert np.array_equal(derived.read("ra", as_="numpy")["ra"], ra)
    # a view opened by a relative name keeps working after the reader changes directory
    view = h5py.File(os.path.join("..", "moved", "views", "v.h5"), "r")
    monkeypatch.chdir("/")
    assert np.array_equal(view["randoms/ra"][:], ra)
    view.close()


def test_a_view_whose_input_is_gone_fails_loudly(placed):
    view = str(placed / "views" / "v.h5")
    make_view(str(placed / "derived.h5"), view, "ra")
    os.remove(placed / "derived.h5")
    with h5py.File(view, "r") as handle:
        with pytest.raises(KeyError, match="unable to open external file"):
            handle["randoms/ra"][:]
    with pytest.raises(InputError, match="linked data file is missing"):
        open_derived(view)


def test_virtual_datasets_would_hide_a_missing_input(tmp_path):
    """Why views use external links: HDF5 reads a VDS with a missing source as fill values."""
    with h5py.File(tmp_path / "src.h5", "w") as src:
        src["x"] = np.arange(5.0)
    layout = h5py.VirtualLayout(shape=(5,), dtype="f8")
    layout[:] = h5py.VirtualSource("src.h5", "/x", shape=(5,))
    with h5py.File(tmp_path / "vds.h5", "w") as out:
        out.create_virtual_dataset("x", layout, fillvalue=-1.0)
        out["linked"] = h5py.ExternalLink("src.h5", "/x")
    os.remove(tmp_path / "src.h5")
    with h5py.File(tmp_path / "vds.h5", "r") as out:
        assert np.all(out["x"][:] == -1.0)  # silently made up
        with pytest.raises(KeyError, match="unable to open external file"):
            out["linked"][:]


def test_view_of_a_view_links_to_the_original(placed):
    source = str(placed / "derived.h5")
    first, second = str(placed / "views" / "v1.h5"), str(placed / "v2.h5")
    make_view(source, first, "ra,dec,psql_g")
    make_view(first, second, "dec")
    os.remove(first)
    with h5py.File(second, "r") as view:
        assert view["randoms"].get("dec", getlink=True).filename == "derived.h5"
        assert view.attrs["view_of"] == "derived.h5" and view.attrs["view_columns"] == "dec"
    with obiwan_h5.open(second) as derived:
        assert derived.columns == ["dec"] and derived.nrows > 0


def test_command_line_errors(placed, capsys):
    source, view = str(placed / "derived.h5"), str(placed / "v.h5")
    assert main(["view", source, "-o", view, "--columns", "ra,tractor_flx_g"]) == 2
    assert "unknown column 'tractor_flx_g' (did you mean tractor_flux_g" in capsys.readouterr().err
    assert main(["view", source, "-o", view]) == 2
    assert "--columns" in capsys.readouterr().err
    assert not os.path.exists(view)
    assert main(["view", source, "-o", view, "--columns", "ra"]) == 0
    assert main(["view", source, "-o", view, "--columns", "dec"]) == 2
    assert "exists; use --overwrite" in capsys.readouterr().err
    assert main(["view", source, "-o", view, "--columns", "dec", "--overwrite"]) == 0
    with h5py.File(view, "r") as handle:
        assert list(handle["randoms"]) == ["dec"]
    assert main(["view", source, "-o", source, "--columns", "dec", "--overwrite"]) == 2
    assert "is an input" in capsys.readouterr().err
    assert main(["view", str(placed / "nothing.h5"), "-o", view, "--columns", "ra", "--overwrite"]) == 2
    assert "no such file" in capsys.readouterr().err
    plain = placed / "plain.h5"
    with h5py.File(plain, "w") as handle:
        handle["x"] = [1]
    assert main(["view", str(plain), "-o", view, "--columns", "ra", "--overwrite"]) == 2
    assert "not an obiwan_h5 derived file" in capsys.readouterr().err
    assert not any(".partial-" in name or ".reserve-" in name for name in os.listdir(placed))


def test_columns_file_and_stdin(placed, monkeypatch):
    source = str(placed / "derived.h5")
    listing = placed / "columns.txt"
    listing.write_text("# what the plots need\nra, dec\npsql_*   # truth\n")
    assert main(["view", source, "-o", str(placed / "a.h5"), "--columns-file", str(listing)]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("obiwan_mask\n"))
    assert main(["view", source, "-o", str(placed / "b.h5"), "--columns", "ra", "--columns-file", "-"]) == 0
    with obiwan_h5.open(str(placed / "a.h5")) as a, obiwan_h5.open(str(placed / "b.h5")) as b:
        assert a.columns[:3] == ["ra", "dec", "psql_id"] and all(c.startswith("psql_") for c in a.columns[2:])
        assert b.columns == ["ra", "obiwan_mask"]


def test_brick_lists(tmp_path, monkeypatch):
    listing = tmp_path / "bricks.txt"
    listing.write_text("# chosen\n0001p000\n0002p000, 0001p000\n")
    assert read_brick_spec(str(listing)) == ["0001p000", "0002p000"]
    assert read_brick_spec("0003m010 0001p000") == ["0003m010", "0001p000"]
    assert read_brick_spec("-", stdin=io.StringIO("0001p000\n")) == ["0001p000"]
    listing.write_text("0001p000\n../etc\n")
    with pytest.raises(InputError, match=r"bricks.txt:2: '../etc' is not a brick name"):
        read_brick_spec(str(listing))
    with pytest.raises(InputError, match="no such brick list file"):
        read_brick_spec(str(tmp_path / "missing.txt"))
    with pytest.raises(InputError, match="empty"):
        read_brick_spec("-", stdin=io.StringIO("# nothing\n"))
