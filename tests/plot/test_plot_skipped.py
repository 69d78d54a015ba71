"""`plot` lists the figures it could not draw and why; none drawn is an error."""

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


@pytest.mark.slow  # renders the figure set twice
def test_skipped_figures_are_listed_with_their_reason(dr5_derived, tmp_path, capsys):
    small = str(tmp_path / "small.h5")
    _without_randoms_columns(dr5_derived, small, ["obiwan_mask", "gflux", "rflux", "zflux",
                                                  "mw_transmission_g", "mw_transmission_r", "mw_transmission_z"])
    numbers = make_figures(small, str(tmp_path / "a"))
    assert "recovery" in numbers["drawn"] and "skymap" in numbers["drawn"]
    assert "tractor_type" in numbers["skipped"]["confusion"]
    assert {"flux_residuals", "astrometry", "confusion", "targets"} <= set(numbers["skipped"])
    assert not set(numbers["skipped"]) & set(numbers["drawn"])
    assert cli.main(["plot", small, "-o", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "skipped confusion: column tractor_type is not in the file" in err
    assert err.count("skipped") == len(numbers["skipped"])


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
