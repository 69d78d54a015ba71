"""`plot` lists the figures it could not draw and why; none drawn is an error."""

import json
import os

import h5py
import pytest

from obiwan_h5 import cli
from obiwan_h5.plot import make_figures


def _without_randoms_columns(source, output, keep):
    with h5py.File(source, "r") as src, h5py.File(output, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        src.copy("bricks", dst)
        src.copy("summary", dst)
        group = dst.create_group("randoms")
        group.attrs["column_order"] = ",".join(keep)
        for name in keep:
            src.copy(f"randoms/{name}", group)


# the view of issue 25: true magnitudes only from the truth table (psql_*), no simcat fluxes
ISSUE_VIEW = "ra,dec,obiwan_mask,targets_mask,psql_g,psql_r,psql_z,tractor_flux_g"


def _without_source(numbers):
    """Numbers with the per-band magnitude sources left out (the only thing that differs)."""
    if isinstance(numbers, dict):
        return {key: _without_source(value) for key, value in numbers.items() if key != "magnitude_source"}
    return numbers


@pytest.mark.slow  # renders the figures of a view
def test_a_view_uses_every_column_that_serves_and_skips_the_rest(dr5_derived, tmp_path, capsys):
    view = str(tmp_path / "v.h5")
    assert cli.main(["view", dr5_derived, "-o", view, "--columns", ISSUE_VIEW]) == 0
    capsys.readouterr()
    (tmp_path / "vfig").mkdir()
    (tmp_path / "vfig" / "astrometry.png").write_bytes(b"an earlier run's figure")
    assert cli.main(["plot", view, "-o", str(tmp_path / "vfig"), "-q"]) == 0
    err = capsys.readouterr().err
    numbers = json.load(open(tmp_path / "vfig" / "numbers.json"))
    # true magnitudes from psql_g/r/z: recovery, targets, inputs and colours are drawn; the
    # brick of each row comes from the brick index: systematics too
    assert numbers["drawn"] == ["inputs", "recovery", "targets", "colours", "systematics", "skymap", "selmap"]
    assert set(numbers["skipped"]) == {"flux_residuals", "residuals", "astrometry", "confusion", "morphology"}
    assert numbers["skipped"]["confusion"] == "column tractor_type is not in the file"
    for name, reason in numbers["skipped"].items():
        assert f"obiwan-h5 plot: skipped {name}: {reason}\n" in err
        assert not (tmp_path / "vfig" / f"{name}.png").exists()
    assert sorted(os.listdir(tmp_path / "vfig")) == sorted(
        [f"{name}.png" for name in numbers["drawn"]] + ["index.html", "numbers.json"])
    # the same numbers as from the simcat fluxes of the full file, and the caption says which
    direct = make_figures(dr5_derived, str(tmp_path / "direct"), only="recovery,targets")
    for name in ("recovery", "targets"):
        assert _without_source(numbers["figures"][name]) == _without_source(direct["figures"][name])
    assert sum(numbers["figures"]["recovery"]["bands"]["g"]["n"]) == numbers["rows_used"] > 0
    assert "psql_g, psql_r, psql_z" in numbers["captions"]["recovery"]
    assert "simcat flux / mw_transmission" in direct["captions"]["recovery"]
    page = open(tmp_path / "vfig" / "index.html").read()
    assert "5 skipped" in page and "column tractor_type is not in the file" in page


def test_no_figure_drawn_exits_non_zero(dr5_derived, tmp_path, capsys):
    small = str(tmp_path / "small.h5")
    _without_randoms_columns(dr5_derived, small, ["ra", "dec"])
    assert cli.main(["plot", small, "-o", str(tmp_path / "c"), "--only", "recovery,astrometry"]) == 1
    err = capsys.readouterr().err
    assert "skipped recovery:" in err and "skipped astrometry:" in err
    assert "none of the chosen figures could be drawn" in err


def test_nothing_skipped_on_a_full_file(dr5_derived, tmp_path):
    numbers = make_figures(dr5_derived, str(tmp_path / "d"), only="recovery,skymap")
    assert numbers["skipped"] == {} and numbers["drawn"] == ["recovery", "skymap"]
