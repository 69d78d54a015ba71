"""The selection-function map figure of `obiwan-h5 plot` (plot.selmap): drawn from the same
counts as `obiwan-h5 maps`, at the finest resolution with enough sources per pixel, and
skipped, saying why, when the footprint spans too few pixels."""

import fitsio
import numpy as np
import pytest
from mapfile import write_map_file

from obiwan_h5.plot import make_figures, selmap
from obiwan_h5.plot.captions import TITLES
from obiwan_h5.read.maps import make_maps


@pytest.fixture(scope="module")
def constructed(tmp_path_factory):
    directory = tmp_path_factory.mktemp("selmap")
    path = str(directory / "constructed.h5")
    write_map_file(path)
    numbers = make_figures(path, str(directory / "figures"), only="selmap")
    return {"path": path, "dir": directory, "numbers": numbers}


def test_the_map_figure_shows_the_maps_of_the_chosen_resolution(constructed):
    numbers = constructed["numbers"]
    figure = numbers["figures"]["selmap"]
    assert numbers["drawn"] == ["selmap"] and not numbers["skipped"]
    nside = figure["nside"]
    assert figure["n_pixels"] >= selmap.MIN_PIXELS and figure["median_injected_per_pixel"] >= selmap.MIN_INJECTED
    # the same numbers as the maps command at that resolution, NESTED ...
    maps = str(constructed["dir"] / f"nest{nside}.fits")
    make_maps(constructed["path"], maps, nside, nest=True)
    table = fitsio.read(maps, ext="MAPS")
    assert figure["n_pixels"] == len(table)
    for name, panel in figure["panels"].items():
        assert panel["median"] == pytest.approx(np.median(table[name]), rel=1e-12)
    # ... and the finest such resolution: twice finer, the median pixel holds too few sources
    finer = str(constructed["dir"] / f"nest{2 * nside}.fits")
    make_maps(constructed["path"], finer, 2 * nside, nest=True)
    assert np.median(fitsio.read(finer, ext="MAPS", columns=["n_inj"])["n_inj"]) < selmap.MIN_INJECTED
    index = open(numbers["index"], encoding="utf-8").read()
    assert "selmap.png" in index and TITLES["selmap"] in index


def test_counting_at_a_coarser_resolution_to_bound_memory_keeps_every_source(constructed, tmp_path, monkeypatch):
    monkeypatch.setattr(selmap, "MAX_PIXELS", 20)
    accumulator = selmap.SelectionMap(["ra", "dec", "obiwan_mask", "targets_mask"], None, 0)
    import obiwan_h5

    with obiwan_h5.open(constructed["path"]) as derived:
        for batch in derived.iter_batches(list(selmap.MAP_INPUT_COLUMNS), batch_rows=3000):
            accumulator.add(batch)
            assert len(accumulator.totals.keys) + accumulator.totals.pending_keys <= 20
        rows = sum(stop - start for start, stop in derived.brick_ranges())
    numbers = accumulator.numbers()
    assert accumulator.table["n_inj"].sum() == rows
    assert numbers["nside"] <= constructed["numbers"]["figures"]["selmap"]["nside"]


def test_a_footprint_of_too_few_pixels_is_skipped_with_the_reason(dr5_derived, tmp_path):
    import obiwan_h5

    with obiwan_h5.open(dr5_derived) as derived:
        brick = derived.bricknames[0]
    numbers = make_figures(dr5_derived, str(tmp_path / "figures"), only="selmap", bricks=brick)
    assert "HEALPix pixel(s)" in numbers["skipped"]["selmap"] and numbers["drawn"] == []
    assert not (tmp_path / "figures" / "selmap.png").exists()  # a skipped figure is not drawn
