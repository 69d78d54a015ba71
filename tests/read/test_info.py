"""`obiwan-h5 info`: readable and JSON descriptions of derived files, views and subsets."""

import json
import os
import shutil

import h5py
import numpy as np

from obiwan_h5.cli import main
from obiwan_h5.read.info import describe
from obiwan_h5.read.view import make_view


def test_text_report(dr5_derived, capsys):
    assert main(["info", dr5_derived]) == 0
    out = capsys.readouterr().out
    with h5py.File(dr5_derived, "r") as src:
        nrows, nbricks = len(src["randoms/ra"]), len(src["bricks/name"])
        ncolumns = len(src["randoms"])
        creation = src.attrs["creation_time"]
    assert f"rows             {nrows}" in out
    assert f"bricks           {nbricks}: {nbricks} done ({nrows} rows)" in out
    assert "format           obiwan_h5 version 1" in out and creation in out
    assert "complete         yes" in out and "match radius     1.0 arcsec" in out
    assert f"{ncolumns} in randoms" in out and "--list-columns" in out
    assert "tractor_flux_g" not in out  # columns are listed only on request

    assert main(["info", dr5_derived, "--list-columns"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.split()[:1] == ["tractor_apflux_g"])
    assert line.split()[1:4] == ["float32", "8", "nanomaggy"]
    assert next(line for line in out.splitlines() if line.split()[:1] == ["unique_id"]).split()[1].startswith("S")


def test_json_report(dr5_derived, capsys):
    assert main(["info", dr5_derived, "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    with h5py.File(dr5_derived, "r") as src:
        status = src["bricks/status"][:]
        assert facts["rows"] == len(src["randoms/ra"])
        assert facts["bricks"]["total"] == len(status)
        assert facts["bricks"]["done"]["bricks"] == int(np.sum(status == 1))
        assert [column["name"] for column in facts["columns"]] == src["randoms"].attrs["column_order"].split(",")
    assert facts["size_bytes"] == os.path.getsize(dr5_derived)
    attributes = facts["attributes"]
    assert attributes["complete"] is True and attributes["format_version"] == 1
    assert attributes["match_radius_arcsec"] == 1.0 and isinstance(attributes["inputs"], dict)
    for key in ("software_version", "creation_time", "command_line", "nranks"):
        assert key in attributes
    apflux = next(column for column in facts["columns"] if column["name"] == "tractor_apflux_g")
    assert apflux == {"name": "tractor_apflux_g", "dtype": "float32", "shape": [8], "unit": "nanomaggy",
                      "description": apflux["description"]} and apflux["description"]
    assert facts["linked_files"] == []


def test_view_and_incomplete_file(dr5_derived, tmp_path, capsys):
    copy = tmp_path / "derived.h5"
    shutil.copy(dr5_derived, copy)
    view = str(tmp_path / "v.h5")
    make_view(str(copy), view, "ra,dec")
    facts = describe(view)
    assert [column["name"] for column in facts["columns"]] == ["ra", "dec"]
    assert facts["linked_files"][0]["file"] == "derived.h5" and facts["linked_files"][0]["exists"]
    assert facts["linked_files"][0]["size_bytes"] == os.path.getsize(copy) > facts["size_bytes"]
    assert main(["info", view]) == 0
    assert "view of          derived.h5" in capsys.readouterr().out

    with h5py.File(copy, "r+") as handle:
        handle.attrs["complete"] = False
        handle["bricks/status"][0] = 0
    assert main(["info", str(copy)]) == 0
    captured = capsys.readouterr()
    assert "complete         NO" in captured.out and "1 pending" in captured.out


def test_brick_list(dr5_derived, tmp_path, capsys):
    copy = tmp_path / "derived.h5"
    shutil.copy(dr5_derived, copy)
    with h5py.File(copy, "r+") as handle:
        handle["bricks/status"][1] = 3
        handle["bricks/message"][1] = b"tractor-x.fits: not found"
        names = handle["bricks/name"][:].astype(str)
        count = handle["bricks/count"][:]
    facts = describe(str(copy), bricks=True)
    assert [brick["name"] for brick in facts["brick_list"]] == list(names)
    assert facts["brick_list"][1] == {"name": names[1], "status": "failed", "offset": int(count[0]),
                                      "rows": int(count[1]), "message": "tractor-x.fits: not found"}
    assert "brick_list" not in describe(str(copy))
    assert main(["info", str(copy), "--list-bricks"]) == 0
    out = capsys.readouterr().out
    assert f"{names[1]}  failed{count[1]:>14}  tractor-x.fits: not found" in out
    assert "1 failed" in out


def test_unreadable_input(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.h5")]) == 2
    assert "missing.h5: no such file" in capsys.readouterr().err
    (tmp_path / "text.h5").write_text("hello")
    assert main(["info", str(tmp_path / "text.h5")]) == 2
    assert "not a readable HDF5 file" in capsys.readouterr().err
