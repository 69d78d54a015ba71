"""`obiwan-h5 plot`: the figures, the index page and the numbers behind them."""

import glob
import html
import json
import os
import shutil

import h5py
import numpy as np
import pytest
from matplotlib.image import imread
from scipy.special import ndtri

import obiwan_h5
from obiwan_h5 import cli
from obiwan_h5.core.selection import MAGNITUDE_LIMITS, TARGET_BITS, flux_to_mag
from obiwan_h5.errors import InputError
from obiwan_h5.job import DeriveOptions, derive
from obiwan_h5.job.mpi import SerialComm
from obiwan_h5.plot.accumulate import CHI_BINS, injected_morphology
from obiwan_h5.plot.figures import FIGURES, bricks_used, make_figures
from obiwan_h5.plot.stats import MAG_BINS, Reservoir, coalesce, crossing, robust_stats, wilson_interval
from obiwan_h5.sim import simulate

# standard deviation of a normal distribution per unit of median absolute deviation
SIGMA_PER_MAD = 1 / ndtri(0.75)

BANDS = ("g", "r", "z")


@pytest.fixture(scope="module")
def dr5_figures(dr5_derived, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("figures"))
    return out, make_figures(dr5_derived, out)


def _read(path, names, group="randoms"):
    with h5py.File(path, "r") as handle:
        return {name: handle[f"{group}/{name}"][:] for name in names}


def _true_mag(data, band):
    with np.errstate(divide="ignore", invalid="ignore"):
        return flux_to_mag(data[f"{band}flux"].astype(np.float64) / data[f"mw_transmission_{band}"])


def _check_pngs(out, names=FIGURES):
    for name in names:
        image = imread(os.path.join(out, f"{name}.png"))
        assert image.shape[0] > 400 and image.shape[1] > 600, name
        # at most 1300 pixels wide: the index page shows every figure near full size
        assert image.shape[1] <= 1300, f"{name}.png is {image.shape[1]} pixels wide"
        assert image[..., :3].std() > 0.05, f"{name}.png looks blank"


def _check_skipped(out, numbers, reasons):
    """Figures skipped for the given reasons (substrings), not drawn, listed on the page."""
    page = open(os.path.join(out, "index.html")).read()
    for name, reason in reasons.items():
        assert reason in numbers["skipped"][name], (name, numbers["skipped"][name])
        assert name not in numbers["drawn"] and name not in numbers["files"]
        assert not os.path.exists(os.path.join(out, f"{name}.png"))
        assert f"<img src='{name}.png'" not in page and html.escape(numbers["skipped"][name]) in page


def _derive(production, output):
    return derive(DeriveOptions(production, output), SerialComm())


# ------------------------------------------------------------------- files and the page

@pytest.mark.slow
def test_every_figure_index_and_numbers_file(dr5_figures, dr5_derived):
    out, numbers = dr5_figures
    _check_pngs(out)
    page = open(os.path.join(out, "index.html")).read()
    for name in FIGURES:
        assert f"<img src='{name}.png'" in page  # relative links
        assert numbers["captions"][name] in html.unescape(page)
    assert "numbers.json" in page and f"{numbers['figures']['recovery']['bands']['g']['mag50']:.2f}" in page
    with open(os.path.join(out, "numbers.json")) as handle:
        assert json.load(handle) == numbers
    with h5py.File(dr5_derived, "r") as handle:
        assert numbers["rows_used"] == len(handle["randoms/obiwan_mask"]) > 0
        assert numbers["bricks"]["n_bricks_used"] == len(handle["bricks/name"]) == 6


# ---------------------------------------------------------- numbers vs direct numpy reads

def test_recovery_numbers_match_numpy(dr5_figures, dr5_derived):
    numbers = dr5_figures[1]["figures"]["recovery"]
    data = _read(dr5_derived, ["obiwan_mask"] + [f"{b}flux" for b in BANDS] + [f"mw_transmission_{b}" for b in BANDS])
    recovered = (data["obiwan_mask"] & 1) > 0
    assert numbers["n_recovered"] == recovered.sum()
    assert numbers["fraction_recovered"] == pytest.approx(recovered.mean())
    for band in BANDS:
        mag = _true_mag(data, band)
        total = np.histogram(mag[np.isfinite(mag)], MAG_BINS)[0]
        found = np.histogram(mag[np.isfinite(mag) & recovered], MAG_BINS)[0]
        d = numbers["bands"][band]
        assert d["n"] == total.tolist() and d["n_recovered"] == found.tolist()
        with np.errstate(invalid="ignore", divide="ignore"):
            expected = found / total
        got = np.array([np.nan if v is None else v for v in d["fraction"]])
        assert np.allclose(got, expected, equal_nan=True)


def _simulator_half_recovered():
    """True de-extincted g, r, z where the simulator's recovery is 50% (total S/N = 10 at
    its nominal galaxy depths, mean ELG colours g-r = 0.35, r-z = 0.75)."""
    colours = np.array([0.0, 0.35, 1.10])
    sigma = 10 ** (-0.4 * (simulate.GALDEPTH - 22.5)) / 5
    grid = np.linspace(21, 26, 5001)
    snr = np.sqrt(np.sum((10 ** (-0.4 * (grid[:, None] - colours - 22.5)) / sigma) ** 2, axis=1))
    g50 = grid[np.argmin(np.abs(snr - 10))]
    return dict(zip(BANDS, g50 - colours))


def test_recovery_falls_from_one_to_zero_through_the_simulator_depth(dr5_figures, dr5_derived):
    numbers = dr5_figures[1]["figures"]["recovery"]
    data = _read(dr5_derived, [f"mw_transmission_{b}" for b in BANDS])
    expected = _simulator_half_recovered()
    for band in BANDS:
        d = numbers["bands"][band]
        n, frac = np.array(d["n"]), np.array([np.nan if v is None else v for v in d["fraction"]])
        well = np.flatnonzero(n >= 20)
        assert frac[well[0]] >= 0.9, band
        assert frac[well[-1]] <= 0.3, band
        extinction = np.median(-2.5 * np.log10(data[f"mw_transmission_{band}"]))
        assert d["mag50"] == pytest.approx(expected[band] - extinction, abs=0.35), band
    mag50 = [numbers["bands"][b]["mag50"] for b in BANDS]
    assert mag50[0] > mag50[1] > mag50[2]


def test_flux_residual_statistics_match_numpy(dr5_figures, dr5_derived):
    numbers = dr5_figures[1]["figures"]["flux_residuals"]
    names = ["obiwan_mask"] + [f"{b}flux" for b in BANDS] + [f"tractor_flux_{b}" for b in BANDS] \
        + [f"tractor_flux_ivar_{b}" for b in BANDS]
    data = _read(dr5_derived, names)
    recovered = (data["obiwan_mask"] & 1) > 0
    for band in BANDS:
        delta = (data[f"tractor_flux_{band}"].astype(np.float64) - data[f"{band}flux"])[recovered]
        ivar = data[f"tractor_flux_ivar_{band}"].astype(np.float64)[recovered]
        ok = np.isfinite(delta) & (ivar > 0)
        chi = delta[ok] * np.sqrt(ivar[ok])
        d = numbers["bands"][band]
        assert d["n"] == ok.sum() > 100 and d["sample_complete"]
        assert d["median_chi"] == pytest.approx(np.median(chi), rel=1e-9)
        assert d["sigma_chi"] == pytest.approx(SIGMA_PER_MAD * np.median(np.abs(chi - np.median(chi))), rel=1e-9)
        assert d["sigma_delta"] == pytest.approx(
            SIGMA_PER_MAD * np.median(np.abs(delta[ok] - np.median(delta[ok]))), rel=1e-9)
        assert 0.85 < d["sigma_chi"] < 1.2 and abs(d["median_chi"]) < 0.2
        inside = np.abs(chi) <= CHI_BINS[-1]
        assert d["chi_hist"] == np.histogram(chi[inside], CHI_BINS)[0].tolist()


def test_astrometry_statistics_match_numpy(dr5_figures, dr5_derived):
    numbers = dr5_figures[1]["figures"]["astrometry"]
    data = _read(dr5_derived, ["obiwan_mask", "ra", "dec", "tractor_ra", "tractor_dec"])
    rec = (data["obiwan_mask"] & 1) > 0
    dra = ((data["tractor_ra"] - data["ra"] + 180) % 360 - 180)[rec] * np.cos(np.radians(data["dec"][rec])) * 3600
    ddec = (data["tractor_dec"] - data["dec"])[rec] * 3600
    assert numbers["n"] == rec.sum()
    assert (numbers["median_dra"], numbers["sigma_dra"]) == pytest.approx(robust_stats(dra), rel=1e-9)
    assert (numbers["median_ddec"], numbers["sigma_ddec"]) == pytest.approx(robust_stats(ddec), rel=1e-9)
    assert 0.005 < numbers["sigma_dra"] < 0.3 and abs(numbers["median_ddec"]) < 0.02


def test_target_selection_counts_match_numpy(dr5_figures, dr5_derived):
    numbers = dr5_figures[1]["figures"]["targets"]["selections"]
    data = _read(dr5_derived, ["targets_mask", "gflux", "rflux", "mw_transmission_g", "mw_transmission_r"])
    mask = data["targets_mask"]
    for sel, band in (("desi_elg", "r"), ("eboss_ngc", "g"), ("eboss_sgc", "g")):
        true = (mask & (1 << TARGET_BITS[f"{sel}_true"])) > 0
        measured = (mask & (1 << TARGET_BITS[sel])) > 0
        d = numbers[sel]
        assert d["band"] == band and d["n_true"] == true.sum() > 0
        assert d["n_measured"] == measured.sum() and d["n_true_and_measured"] == (true & measured).sum()
        assert d["n_measured_not_true"] == (measured & ~true).sum()
        assert d["completeness"] == pytest.approx((true & measured).sum() / true.sum())
        assert d["contamination"] == pytest.approx((measured & ~true).sum() / measured.sum())
        mag = _true_mag(data, band)
        assert d["hist_true"] == np.histogram(mag[true], MAG_BINS)[0].tolist()
        assert d["hist_measured_not_true"] == np.histogram(mag[measured & ~true], MAG_BINS)[0].tolist()
        # beyond the selection's own magnitude limits nothing is true-selected: contamination is
        # 1 there by definition, so it is not given per bin, and those sources are counted apart
        _, brightest, faintest = MAGNITUDE_LIMITS[sel]
        beyond = measured & ((mag < brightest) | (mag > faintest))
        assert not (true & ((mag < brightest) | (mag > faintest))).any()
        assert d["n_measured_beyond_cut"] == beyond.sum() > 0
        assert d["contamination_within_cut"] == pytest.approx(
            ((measured & ~true).sum() - beyond.sum()) / (measured.sum() - beyond.sum()))
        outside = (MAG_BINS[1:] <= brightest) | (MAG_BINS[:-1] >= faintest)
        assert np.asarray(d["hist_measured"])[outside].sum() > 0
        assert all(d["contamination_bins"][k] is None for k in np.flatnonzero(outside))
        assert d["contamination_bins"][int(np.argmax(np.asarray(d["hist_measured"]) * ~outside))] is not None


def test_confusion_matrix(dr5_figures, dr5_derived):
    numbers = dr5_figures[1]["figures"]["confusion"]
    counts = np.array(numbers["counts"])
    columns = numbers["columns"]
    data = _read(dr5_derived, ["obiwan_mask", "n", "rhalf"])
    recovered = (data["obiwan_mask"] & 1) > 0
    assert counts.sum() == len(recovered)
    assert counts[:, columns.index("unrecovered")].sum() == (~recovered).sum()
    classes = injected_morphology(data["n"], data["rhalf"])
    assert counts.sum(axis=1).tolist() == np.bincount(classes, minlength=4).tolist()
    types = columns[:6]  # PSF SIMP REX EXP DEV COMP
    for row, kind in enumerate(("PSF", "EXP", "DEV")):
        assert types[int(np.argmax(counts[row, :6]))] == kind  # the simulator mostly fits what it injected
    # no space for empty categories: DR5 has no SIMP, nothing is "other" or of unknown morphology
    assert numbers["columns_shown"] == [name for name, n in zip(columns, counts.sum(axis=0)) if n]
    assert "SIMP" not in numbers["columns_shown"] and "other" not in numbers["columns_shown"]
    assert {"REX", "unrecovered"} <= set(numbers["columns_shown"])
    assert numbers["rows_shown"] == ["PSF-like", "EXP-like", "DEV-like"]
    morphology = dr5_figures[1]["figures"]["morphology"]
    assert morphology["classes_shown"] == numbers["rows_shown"]
    assert morphology["types_shown"] == [name for name in numbers["columns_shown"] if name != "unrecovered"]


def test_shape_residuals_are_unit_normal_and_dev_fits_sit_apart(dr5_figures, dr5_derived):
    quantities = dr5_figures[1]["figures"]["residuals"]["quantities"]
    data = _read(dr5_derived, ["obiwan_mask", "tractor_type", "rhalf", "tractor_shapeexp_r",
                               "tractor_shapeexp_r_ivar"])
    kind = np.char.strip(data["tractor_type"].astype(str))
    chosen = ((data["obiwan_mask"] & 1) > 0) & np.isin(kind, ["EXP", "REX"]) & (data["tractor_shapeexp_r_ivar"] > 0)
    pull = (data["tractor_shapeexp_r"][chosen] - data["rhalf"][chosen]) * np.sqrt(data["tractor_shapeexp_r_ivar"][chosen])
    rhalf = quantities["rhalf"]
    assert rhalf["n"] == chosen.sum() and rhalf["robust_median"] == pytest.approx(np.median(pull), abs=1e-5)
    # the simulator's radius noise agrees with its ivar: the exponential fits are unit normal
    assert 0.85 < rhalf["robust_sigma"] < 1.2 and 0.85 < rhalf["fit_sigma"] < 1.2
    assert rhalf["n_outside_bins"] < 0.02 * rhalf["n"]
    # DEV fits sit off zero (a profile mismatch) and are kept out of that fit
    assert quantities["rhalf_dev"]["n"] > 50 and quantities["rhalf_dev"]["robust_median"] > 1
    for key in ("e1", "e2"):
        assert 0.85 < quantities[key]["robust_sigma"] < 1.2


def test_inputs_count_each_value_of_a_discrete_property(dr5_figures, dr5_derived):
    numbers = dr5_figures[1]["figures"]["inputs"]["properties"]
    data = _read(dr5_derived, ["obiwan_mask", "n"])
    values, counts = np.unique(data["n"], return_counts=True)
    discrete = numbers["n"]["discrete"]
    assert discrete["values"] == values.tolist() == [0.0, 1.0, 4.0] and discrete["n"] == counts.tolist()
    recovered = (data["obiwan_mask"] & 1) > 0
    assert discrete["n_recovered"] == [int(recovered[data["n"] == v].sum()) for v in values]
    assert numbers["rhalf"]["discrete"] is None and numbers["redshift"]["discrete"] is None


def test_index_page_has_contents_and_numbers_beside_each_figure(dr5_figures):
    out, numbers = dr5_figures
    page = open(os.path.join(out, "index.html")).read()
    contents = page[page.index("<h2>Contents</h2>"):page.index("</ol>")]
    sections = page.split("<section id=")[1:]
    assert len(sections) == len(numbers["drawn"]) == len(FIGURES)
    for name, section in zip(numbers["drawn"], sections):
        assert f"<a href='#{name}'>" in contents and f"<a href='#{name}'>{name}</a>" in page  # contents, bar
        assert section.startswith(f"'{name}'")
        # the figure, a link to its full size, beside its caption and numbers
        assert f"<a href='{name}.png'><img src='{name}.png'" in section
        assert "class='numbers'" in section and html.escape(numbers["captions"][name]) in section
    assert "<table>" in sections[numbers["drawn"].index("recovery")]
    assert "position:sticky" in page


def test_injected_morphology_mapping():
    n = np.array([0.0, 1.0, 4.0, np.nan, 1.0, 2.4, 2.5])
    rhalf = np.array([0.0, 0.5, 0.5, np.nan, 0.01, 0.5, 0.5])
    assert injected_morphology(n, rhalf).tolist() == [0, 1, 2, 3, 0, 1, 2]
    assert injected_morphology(None, None) is None


def test_skymap_numbers(dr5_figures, dr5_derived):
    numbers = dr5_figures[1]["figures"]["skymap"]
    summary = _read(dr5_derived, ["frac_recovered", "galdepth_g"], group="summary")
    assert numbers["n_bricks"] == 6
    assert numbers["frac_recovered"]["median"] == pytest.approx(np.median(summary["frac_recovered"]))
    assert numbers["galdepth_g"]["max"] == pytest.approx(summary["galdepth_g"].max())


# ---------------------------------------------------------------- awkward inputs

@pytest.mark.slow
def test_file_with_a_failed_brick_renders(production_copy, tmp_path):
    victim = sorted(glob.glob(os.path.join(production_copy, "tractor", "*", "*", "*", "tractor-*.fits")))[0]
    os.remove(victim)
    output = str(tmp_path / "derived.h5")
    _derive(production_copy, output)
    with h5py.File(output, "r") as handle:
        status, counts = handle["bricks/status"][:], handle["bricks/count"][:]
    assert (status != 1).sum() == 1
    out = str(tmp_path / "figures")
    numbers = make_figures(output, out)
    # five bricks span too few HEALPix pixels for a selection-function map; everything else is drawn
    assert set(numbers["skipped"]) == {"selmap"} and "HEALPix pixel(s)" in numbers["skipped"]["selmap"]
    _check_pngs(out, numbers["drawn"])
    assert numbers["bricks"]["n_bricks_not_done"] == 1 and numbers["bricks"]["n_bricks_used"] == 5
    assert numbers["rows_used"] == counts[status == 1].sum()
    assert numbers["figures"]["skymap"]["n_bricks"] == 5


@pytest.mark.slow
def test_dr3_schema_renders(dr3_production, tmp_path):
    output = str(tmp_path / "derived.h5")
    _derive(dr3_production, output)
    with h5py.File(output, "r") as handle:
        assert "tractor_decam_flux" in handle["randoms"] and "tractor_flux_g" not in handle["randoms"]
    out = str(tmp_path / "figures")
    numbers = make_figures(output, out)
    # three bricks span too few HEALPix pixels for a selection-function map
    assert set(numbers["skipped"]) == {"selmap"}
    _check_pngs(out, numbers["drawn"])
    flux = numbers["figures"]["flux_residuals"]["bands"]
    assert set(flux) == set(BANDS)
    for band in BANDS:
        assert flux[band]["n"] > 50 and 0.8 < flux[band]["sigma_chi"] < 1.25
    confusion = numbers["figures"]["confusion"]
    counts = np.array(confusion["counts"])
    assert counts[:, confusion["columns"].index("SIMP")].sum() > 0
    assert counts[:, confusion["columns"].index("REX")].sum() == 0
    assert "SIMP" in confusion["columns_shown"] and "REX" not in confusion["columns_shown"]


@pytest.mark.slow
def test_no_recovered_sources_and_an_empty_band(dr5_derived, tmp_path):
    nothing = str(tmp_path / "nothing.h5")
    shutil.copy(dr5_derived, nothing)
    with h5py.File(nothing, "r+") as handle:
        handle["randoms/obiwan_mask"][...] = 0
        handle["randoms/targets_mask"][...] &= 0b111000
    made = make_figures(nothing, str(tmp_path / "a"))
    numbers = made["figures"]
    _check_pngs(str(tmp_path / "a"), made["drawn"])
    # a figure with no data is never drawn: listed as skipped, with its reason
    _check_skipped(str(tmp_path / "a"), made, {
        "flux_residuals": "no recovered source with a measured flux", "astrometry": "no recovered source",
        "residuals": "no recovered source"})
    assert {"recovery", "targets", "inputs", "confusion", "systematics", "skymap"} <= set(made["drawn"])
    assert numbers["recovery"]["fraction_recovered"] == 0
    assert all(numbers["recovery"]["bands"][b]["mag50"] is None for b in BANDS)
    assert all(numbers["flux_residuals"]["bands"][b]["n"] == 0 for b in BANDS)
    assert numbers["astrometry"]["n"] == 0 and numbers["astrometry"]["sigma_dra"] is None
    assert numbers["targets"]["selections"]["desi_elg"]["completeness"] == 0

    no_z = str(tmp_path / "no_z.h5")
    shutil.copy(dr5_derived, no_z)
    with h5py.File(no_z, "r+") as handle:
        handle["randoms/tractor_flux_z"][...] = np.nan
    made = make_figures(no_z, str(tmp_path / "b"), only="flux_residuals")
    flux = made["figures"]["flux_residuals"]["bands"]
    assert made["drawn"] == ["flux_residuals"]  # two bands with data are enough
    _check_pngs(str(tmp_path / "b"), ["flux_residuals"])
    assert flux["z"]["n"] == 0 and flux["z"]["sigma_chi"] is None and flux["g"]["n"] > 0


def test_column_subset_file_renders_what_it_can(dr5_derived, tmp_path):
    """A view/subset-like file (same layout, fewer columns): missing columns give a note."""
    keep = ["obiwan_mask", "gflux", "rflux", "zflux", "mw_transmission_g", "mw_transmission_r", "mw_transmission_z"]
    small = str(tmp_path / "subset.h5")
    with h5py.File(dr5_derived, "r") as src, h5py.File(small, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        src.copy("bricks", dst)
        src.copy("summary", dst)
        group = dst.create_group("randoms")
        group.attrs["column_order"] = ",".join(keep)
        for name in keep:
            src.copy(f"randoms/{name}", group)
    out = str(tmp_path / "figures")
    made = make_figures(small, out)
    figures = made["figures"]
    _check_pngs(out, made["drawn"])
    _check_skipped(out, made, {"confusion": "column tractor_type", "astrometry": "column ra is not"})
    assert figures["recovery"]["n_rows"] > 0 and "missing" not in figures["recovery"]
    assert "tractor_type" in figures["confusion"]["missing"]
    assert "missing" in figures["flux_residuals"] and "missing" in figures["astrometry"]


@pytest.mark.slow
def test_view_and_subset_files(dr5_derived, tmp_path):
    """Files made by `obiwan-h5 view` (links, chosen columns) and `subset` (sampled bricks)."""
    view, subset = str(tmp_path / "view.h5"), str(tmp_path / "subset.h5")
    columns = "obiwan_mask,gflux,rflux,zflux,mw_transmission_*,tractor_flux_*,tractor_flux_ivar_*"
    assert cli.main(["view", dr5_derived, "-o", view, "--columns", columns]) == 0
    assert cli.main(["subset", dr5_derived, "-o", subset, "--sample", "0.5", "--seed", "2"]) == 0
    from_view = make_figures(view, str(tmp_path / "v"), only="recovery,flux_residuals,confusion")
    direct = make_figures(dr5_derived, str(tmp_path / "d"), only="recovery,flux_residuals")
    assert from_view["figures"]["recovery"] == direct["figures"]["recovery"]
    assert from_view["figures"]["flux_residuals"] == direct["figures"]["flux_residuals"]
    assert "tractor_type" in from_view["figures"]["confusion"]["missing"]
    from_subset = make_figures(subset, str(tmp_path / "s"))
    assert set(from_subset["skipped"]) == {"selmap"}  # three bricks: too few HEALPix pixels for a map
    _check_pngs(str(tmp_path / "s"), from_subset["drawn"])
    with h5py.File(subset, "r") as handle:
        assert from_subset["rows_used"] == len(handle["randoms/obiwan_mask"]) > 0
        assert from_subset["figures"]["skymap"]["n_bricks"] == len(handle["bricks/name"]) == 3


# ---------------------------------------------------------------- options and errors

def test_only_and_sample_from_the_command_line(dr5_derived, tmp_path, capsys):
    out = str(tmp_path / "figures")
    argv = ["plot", dr5_derived, "-o", out, "--only", "recovery,skymap", "--sample", "0.5", "--seed", "3"]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.strip() == os.path.abspath(os.path.join(out, "index.html"))
    assert sorted(name for name in os.listdir(out) if name.endswith(".png")) == ["recovery.png", "skymap.png"]
    numbers = json.load(open(os.path.join(out, "numbers.json")))
    used = numbers["bricks"]["names"]
    assert len(used) == 3 and numbers["figures"]["skymap"]["n_bricks"] == 3
    with h5py.File(dr5_derived, "r") as handle:
        names = [n.decode() for n in handle["bricks/name"][:]]
        counts = handle["bricks/count"][:]
    assert numbers["rows_used"] == sum(counts[names.index(name)] for name in used)
    again = make_figures(dr5_derived, str(tmp_path / "again"), only="recovery", sample=0.5, seed=3)
    assert again["bricks"]["names"] == used  # deterministic for a seed
    with obiwan_h5.open(dr5_derived) as derived:
        others = {tuple(bricks_used(derived, sample=0.5, seed=seed)[0]) for seed in range(4, 9)}
    assert len(others | {tuple(used)}) > 1  # and the seed matters


def test_bricks_as_list_or_file(dr5_derived, tmp_path):
    with h5py.File(dr5_derived, "r") as handle:
        names = [n.decode() for n in handle["bricks/name"][:2]]
    listed = make_figures(dr5_derived, str(tmp_path / "a"), only="skymap", bricks=",".join(names))
    path = tmp_path / "bricks.txt"
    path.write_text("# two bricks\n" + "\n".join(names) + "\n")
    from_file = make_figures(dr5_derived, str(tmp_path / "b"), only="skymap", bricks=str(path))
    assert listed["bricks"]["names"] == from_file["bricks"]["names"] == sorted(names)
    assert from_file["figures"]["skymap"]["n_bricks"] == 2


def test_bad_input_is_an_input_error(dr5_derived, tmp_path, capsys):
    other = str(tmp_path / "other.h5")
    with h5py.File(other, "w") as handle:
        handle["x"] = np.arange(3)
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    for path in (other, str(text), str(tmp_path / "absent.h5")):
        with pytest.raises(InputError):
            make_figures(path, str(tmp_path / "out"))
    with pytest.raises(InputError, match="unknown figure 'recover'"):
        make_figures(dr5_derived, str(tmp_path / "out"), only="recover")
    with pytest.raises(InputError, match="`sample`"):
        make_figures(dr5_derived, str(tmp_path / "out"), sample=0)
    with pytest.raises(InputError, match="unknown brick"):
        make_figures(dr5_derived, str(tmp_path / "out"), bricks="0001p000")
    with pytest.raises(InputError, match="not a brick name"):
        make_figures(dr5_derived, str(tmp_path / "out"), bricks="1741p242,etc")
    with pytest.raises(InputError, match="no such brick list file"):  # a path, never a brick
        make_figures(dr5_derived, str(tmp_path / "out"), bricks="../etc")
    capsys.readouterr()
    assert cli.main(["plot", other, "-o", str(tmp_path / "out")]) == 2
    assert cli.main(["plot", dr5_derived, "-o", str(tmp_path / "out"), "--only", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "obiwan-h5 plot: error:" in err
    assert not os.path.exists(tmp_path / "out")


def test_reads_only_the_needed_columns_in_bounded_batches(dr5_derived, dr5_figures, tmp_path, monkeypatch):
    reads = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        if self.name.startswith("/randoms/"):
            reads.append((self.name, key))
        return original(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    small = make_figures(dr5_derived, str(tmp_path / "out"), only="recovery", batch_rows=200)
    assert small["figures"]["recovery"] == dr5_figures[1]["figures"]["recovery"]  # batching changes nothing
    expected = {"/randoms/obiwan_mask"} | {f"/randoms/{b}flux" for b in BANDS} \
        | {f"/randoms/mw_transmission_{b}" for b in BANDS}
    assert {name for name, _ in reads} == expected
    assert all(isinstance(key, slice) and key.stop - key.start <= 200 for _, key in reads)


# ---------------------------------------------------------------------------- statistics

def _wilson_by_hand(k, n, z):
    """The Wilson score interval from its textbook formula, for comparison."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_wilson_interval_and_crossing():
    fraction, low, high = wilson_interval([0, 5, 10, 0], [10, 10, 10, 0])
    assert low[0] == 0 < high[0] < 0.2 and high[2] == 1 > low[2] > 0.8
    assert low[1] < 0.5 < high[1] and np.isnan(fraction[3]) and np.isnan(low[3]) and np.isnan(high[3])
    centres = np.array([20.0, 21.0, 22.0, 23.0])
    assert crossing(centres, [1.0, 0.8, 0.4, 0.1], [50] * 4) == pytest.approx(21.75)
    # a sparse bright bin dipping below 0.5 is ignored; the faintest >= 0.5 bin is used
    assert crossing(centres, [0.0, 0.8, 0.4, 0.1], [1, 50, 50, 50]) == pytest.approx(21.75)
    assert crossing(centres, [1.0, 0.9, 0.8, 0.7], [50] * 4) is None


@pytest.mark.parametrize("z", [1.0, 2.0])
def test_wilson_interval_is_astropys_and_the_textbook_formula(z):
    from astropy.stats import binom_conf_interval
    from scipy.special import erf

    k = np.array([1, 3, 7, 50, 99, 4], dtype=float)
    n = np.array([10, 10, 10, 100, 100, 5], dtype=float)
    fraction, low, high = wilson_interval(k, n, z)
    by_hand = _wilson_by_hand(k, n, z)
    assert np.allclose(fraction, k / n, rtol=0, atol=1e-15)
    assert np.allclose(low, by_hand[0], rtol=1e-12, atol=1e-15)
    assert np.allclose(high, by_hand[1], rtol=1e-12, atol=1e-15)
    astropy_low, astropy_high = binom_conf_interval(k.astype(int), n.astype(int), erf(z / np.sqrt(2)), "wilson")
    assert np.array_equal(low, astropy_low) and np.array_equal(high, astropy_high)
    # counts summed in floats are rounded, not truncated, before astropy sees them
    assert np.array_equal(wilson_interval(k - 1e-9, n)[1], wilson_interval(k, n)[1])


def test_robust_sigma_is_astropys_mad_std():
    from astropy.stats import mad_std

    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(2.0, 0.5, 5000), [np.nan, np.inf, 1e6]])
    median, sigma = robust_stats(values)
    finite = values[np.isfinite(values)]
    assert median == np.median(finite)
    assert sigma == pytest.approx(SIGMA_PER_MAD * np.median(np.abs(finite - median)), rel=1e-12)
    assert sigma == mad_std(finite) and 0.45 < sigma < 0.55  # the outlier does not count
    assert all(np.isnan(robust_stats([np.nan, np.inf])))


def test_reservoir_is_exact_when_small_and_capped_when_large():
    rng = np.random.default_rng(0)
    small = Reservoir(100, rng, ("x",))
    for start in range(0, 90, 30):
        small.add(x=np.arange(start, start + 30))
    assert small.complete and sorted(small.data["x"]) == list(range(90))
    large = Reservoir(1000, np.random.default_rng(0), ("x",))
    for start in range(0, 100_000, 7_000):
        large.add(x=np.arange(start, min(start + 7_000, 100_000)))
    assert large.size == 1000 and large.seen == 100_000 and not large.complete
    assert len(np.unique(large.data["x"])) == 1000
    assert 40_000 < np.median(large.data["x"]) < 60_000  # uniform over the whole stream
    batches = [{"a": np.arange(3)}, {"a": np.arange(0)}, {"a": np.arange(4)}]
    assert [len(b["a"]) for b in coalesce(batches, 5)] == [7]


def test_capped_samples_keep_the_statistics(dr5_derived, dr5_figures, tmp_path):
    capped = make_figures(dr5_derived, str(tmp_path / "out"), only="flux_residuals,astrometry", max_sample=300)
    full = dr5_figures[1]["figures"]
    for band in BANDS:
        d = capped["figures"]["flux_residuals"]["bands"][band]
        assert d["n_sample"] == 300 and not d["sample_complete"]
        assert d["n"] == full["flux_residuals"]["bands"][band]["n"]  # counts stay exact
        assert d["chi_hist"] == full["flux_residuals"]["bands"][band]["chi_hist"]
        assert d["sigma_chi"] == pytest.approx(full["flux_residuals"]["bands"][band]["sigma_chi"], abs=0.2)
    astrometry = capped["figures"]["astrometry"]
    assert astrometry["n_sample"] == 300 and astrometry["n"] == full["astrometry"]["n"]
    assert astrometry["sigma_dra"] == pytest.approx(full["astrometry"]["sigma_dra"], rel=0.3)


def test_bricks_from_standard_input(dr5_derived, tmp_path, monkeypatch):
    import io

    with h5py.File(dr5_derived, "r") as derived:
        names = [name.decode() for name in derived["bricks/name"][:2]]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(names) + "\n"))
    numbers = make_figures(dr5_derived, str(tmp_path / "figs"), only="recovery", bricks="-")
    assert numbers["bricks"]["n_bricks_used"] == 2


def test_the_brick_sample_is_the_documented_draw_of_the_done_bricks(dr5_derived, tmp_path):
    """The done bricks at ``numpy.random.default_rng(S).choice(B, k, replace=False)``,
    k = max(1, floor(F * B + 0.5)), in file order (docs/reading.md); bricks not done are
    never drawn."""
    from obiwan_h5.fileformat import FAILED

    path = str(tmp_path / "some-failed.h5")
    shutil.copy(dr5_derived, path)
    with h5py.File(path, "r+") as handle:
        status = handle["bricks/status"][:]
        status[[0, 3]] = FAILED
        handle["bricks/status"][:] = status
    with obiwan_h5.open(path) as derived:
        done = [name for index, name in enumerate(derived.bricknames) if index not in (0, 3)]
        for seed in (1, 2, 3, 40):
            drawn = np.random.default_rng(seed).choice(len(done), 2, replace=False)  # k = floor(2.4 + 0.5)
            assert bricks_used(derived, sample=0.6, seed=seed)[0] == [done[i] for i in np.sort(drawn)], seed


def test_reservoir_keeps_the_rows_of_the_smallest_seeded_keys():
    """docs/plot.md: bottom-k on seeded random keys, one uniform key per row drawn from the
    generator in row order, batch after batch; the rows of the `capacity` smallest keys stay."""
    sample = Reservoir(50, np.random.default_rng(8), ("x",))
    for start in range(0, 1000, 70):
        sample.add(x=np.arange(start, min(start + 70, 1000)))
    keys = np.random.default_rng(8).random(1000)
    assert sorted(sample.data["x"]) == sorted(np.argsort(keys)[:50])
