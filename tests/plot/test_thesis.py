"""The imaging-systematics page and the thesis figure families: their numbers."""

import h5py
import numpy as np
import pytest

from obiwan_h5.fileformat import SUMMARY_COLUMNS, TARGET_BITS
from obiwan_h5.plot.accumulate import BRICK_INDEX
from obiwan_h5.plot.figures import make_figures
from obiwan_h5.plot.stats import MAG_BINS, wilson_interval
from obiwan_h5.plot.thesis import Systematics, bin_index, density_ratio_interval, quantile_edges


def _bits(*names):
    return sum(1 << TARGET_BITS[name] for name in names)


def _systematics_batch():
    """Four bricks whose recovered fraction rises with galdepth_g: 0.2, 0.4, 0.6, 0.8 of
    100 rows each; the measured DESI density is half the true one in the shallowest brick
    and equal to it in the others."""
    bricks, masks, targets = [], [], []
    for i in range(4):
        n_rec = 20 * (i + 1)
        bricks += [i] * 100
        masks += [1] * n_rec + [0] * (100 - n_rec)
        # 10 true DESI targets per brick, recovered; measured-selected: 5 (brick 0) or 10
        true = [_bits("desi_elg_true", "desi_elg")] * (5 if i == 0 else 10) + [_bits("desi_elg_true")] * (
            5 if i == 0 else 0)
        targets += true + [0] * (100 - len(true))
    # the brick of each row as the figure runner gives it: its index in the file's brick list
    batch = {BRICK_INDEX: np.array(bricks), "obiwan_mask": np.array(masks, np.uint8),
             "targets_mask": np.array(targets, np.uint8)}
    summary = {BRICK_INDEX: np.array([2, 0, 3, 1]),
               "galdepth_g": np.array([24.0, 23.0, 24.5, 23.5]), "ebv": np.array([0.05, np.nan, 0.05, 0.05])}
    return batch, summary


def test_systematics_recovery_follows_depth():
    batch, summary = _systematics_batch()
    acc = Systematics({"obiwan_mask", "targets_mask"}, np.random.default_rng(1), 100)
    assert acc.missing is None  # no brickname column needed
    half = 170  # two batches, split inside a brick
    acc.add({name: values[:half] for name, values in batch.items()})
    acc.add({name: values[half:] for name, values in batch.items()})
    acc.set_summary(summary, set(SUMMARY_COLUMNS))
    numbers = acc.numbers()
    depth = numbers["properties"]["galdepth_g"]
    assert depth["centre"] == [23.0, 23.5, 24.0, 24.5] and depth["n_bricks"] == [1, 1, 1, 1]
    assert depth["n_inj"] == [100] * 4 and depth["n_rec"] == [20, 40, 60, 80]
    assert np.allclose(depth["fraction"], [0.2, 0.4, 0.6, 0.8])
    _, low, high = wilson_interval(np.array([20, 40, 60, 80]), np.array([100] * 4))
    assert np.allclose(depth["low"], low) and np.allclose(depth["high"], high)
    desi = depth["selections"]["desi_elg"]
    assert desi["n_true"] == [10] * 4 and desi["n_meas"] == [5, 10, 10, 10]
    assert np.allclose(desi["ratio"], [0.5, 1, 1, 1]) and desi["fraction_recovered"] == [1.0] * 4
    assert desi["ratio_low"][0] < 0.5 < desi["ratio_high"][0]
    # the eBOSS selections have no targets here: ratios undefined, not 0
    assert numbers["properties"]["galdepth_g"]["selections"]["eboss_ngc"]["ratio"] == [None] * 4
    assert np.isclose(numbers["fraction_recovered"], 0.5)
    assert np.isclose(numbers["density_ratio"]["desi_elg"], 35 / 40)
    # ebv: one brick without a value is left out; the three others share one value
    ebv = numbers["properties"]["ebv"]
    assert ebv["n_bricks"] == [3] and ebv["n_inj"] == [300] and ebv["n_rec"] == [40 + 60 + 80]
    assert "psfsize_g" not in numbers["properties"]  # not in the summary table given


def test_systematics_without_summary_is_skipped():
    acc = Systematics({"obiwan_mask"}, np.random.default_rng(1), 100)
    acc.set_summary({BRICK_INDEX: np.arange(3)}, {"brickname"})
    assert "summary" in acc.missing
    no_mask = Systematics({"ra"}, np.random.default_rng(1), 100)
    assert "obiwan_mask" in no_mask.missing


def test_quantile_edges_and_bins():
    values = np.arange(100.0)
    edges = quantile_edges(values, 4)
    which = bin_index(values, edges)
    assert len(edges) == 5 and list(np.bincount(which)) == [25, 25, 25, 25]
    assert bin_index(np.array([np.nan, -1.0, 99.0]), edges).tolist() == [-1, -1, 3]
    assert len(quantile_edges(np.array([1.0, 1.0, 2.0]))) == 3  # one bin per distinct value
    assert len(quantile_edges(np.array([np.nan]))) == 0


def test_density_ratio_interval():
    ratio, low, high = density_ratio_interval(np.array([10, 0, 5]), np.array([10, 10, 0]))
    assert ratio[0] == 1 and low[0] < 1 < high[0] and ratio[1] == 0 and low[1] == 0
    assert np.isnan(ratio[2])
    # symmetric in log: swapping the counts inverts the interval
    r2, low2, high2 = density_ratio_interval(np.array([30]), np.array([20]))
    r3, low3, high3 = density_ratio_interval(np.array([20]), np.array([30]))
    assert np.isclose(r2[0] * r3[0], 1) and np.isclose(low2[0] * high3[0], 1)


@pytest.fixture(scope="module")
def thesis_figures(dr5_derived, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("thesis"))
    return out, make_figures(dr5_derived, out, only="systematics")


def test_systematics_numbers_match_the_file(thesis_figures, dr5_derived):
    _, numbers = thesis_figures
    sysn = numbers["figures"]["systematics"]
    with h5py.File(dr5_derived, "r") as handle:
        summary = {name: handle["summary"][name][:] for name in ("galdepth_r", "n_inj", "n_rec", "n_true_desi_elg")}
        targets = handle["randoms/targets_mask"][:]
        bricks = handle["randoms/brickname"][:]
    depth = sysn["properties"]["galdepth_r"]
    edges = np.array(depth["edges"])
    which = bin_index(summary["galdepth_r"], edges)
    for k in range(len(edges) - 1):
        assert depth["n_inj"][k] == summary["n_inj"][which == k].sum()
        assert depth["n_rec"][k] == summary["n_rec"][which == k].sum()
        assert depth["selections"]["desi_elg"]["n_true"][k] == summary["n_true_desi_elg"][which == k].sum()
    measured = (targets >> TARGET_BITS["eboss_ngc"]) & 1
    true = (targets >> TARGET_BITS["eboss_ngc_true"]) & 1
    assert np.isclose(sysn["density_ratio"]["eboss_ngc"], measured.sum() / true.sum())
    assert sum(depth["n_bricks"]) == len(np.unique(bricks))
    assert "systematics" in numbers["drawn"] and not numbers["skipped"]


def _residual_batch(n=20000, sigma=1.5, seed=3):
    """Recovered sources whose g flux residual is normal with width `sigma` (in units of the
    Tractor σ = 0.5 nanomaggy) and whose r residual/σ grows with true r magnitude."""
    rng = np.random.default_rng(seed)
    true = np.full(n, 10.0)
    r_true = 10 ** ((22.5 - rng.uniform(20.0, 24.0, n)) / 2.5)
    mag_r = 22.5 - 2.5 * np.log10(r_true)
    batch = {"obiwan_mask": np.ones(n, np.uint8)}
    batch["obiwan_mask"][:100] = 0  # unrecovered rows are not counted
    for b, flux in (("g", true), ("r", r_true), ("z", true)):
        batch[f"{b}flux"] = flux.astype(np.float32)
        batch[f"mw_transmission_{b}"] = np.ones(n, np.float32)
        batch[f"tractor_flux_ivar_{b}"] = np.full(n, 4.0, np.float32)
    batch["tractor_flux_g"] = true + 0.5 * rng.normal(0, sigma, n)
    batch["tractor_flux_r"] = r_true + 0.5 * (mag_r - 22.0)  # residual/σ = mag - 22 exactly
    batch["tractor_flux_z"] = true.copy()
    batch["tractor_flux_z"][100:110] = np.nan  # recovered, but no measured flux: left out
    return batch


def test_residuals_gaussian_fit_and_trend_with_magnitude():
    from obiwan_h5.plot.thesis import Residuals

    batch = _residual_batch()
    available = set(batch)
    acc = Residuals(available, np.random.default_rng(1), 1000)
    assert acc.missing is None and acc.shapes == []
    acc.add({name: values[:7000] for name, values in batch.items()})
    acc.add({name: values[7000:] for name, values in batch.items()})
    numbers = acc.numbers()["quantities"]
    g = numbers["flux_g"]
    assert g["n"] == 20000 - 100
    assert abs(g["fit_sigma"] - 1.5) < 0.05 and abs(g["fit_mean"]) < 0.05
    # r: the median residual in each 0.2-mag bin is (bin centre - 22) within the bin width
    centres = 0.5 * (MAG_BINS[1:] + MAG_BINS[:-1])
    median = np.array([np.nan if v is None else v for v in numbers["flux_r"]["median"]])
    used = np.isfinite(median)
    assert used.sum() >= 18
    assert np.allclose(median[used], centres[used] - 22.0, atol=0.2)
    assert numbers["flux_z"]["n"] == 20000 - 100 - 10
    # z is measured exactly: magnitude residual 0 in the one magnitude bin (22.5 - 2.5 log10 10 = 20)
    z = numbers["flux_z"]
    at = int(np.searchsorted(MAG_BINS, 20.0, side="right") - 1)
    assert sum(z["dmag_vs_mag"][at]) == 20000 - 110
    assert abs(z["dmag_median"][at]) <= 0.05 and z["dmag_q25"][at] >= -0.05 and z["dmag_q75"][at] <= 0.05
    assert sum(sum(row) for row in z["dmag_vs_mag"]) == 20000 - 110


def test_histogram_quantiles_and_gaussian_fit():
    from obiwan_h5.plot.thesis import gaussian_fit, histogram_quantiles

    bins = np.linspace(-6, 6, 61)
    values = np.random.default_rng(0).normal(0.5, 2.0, 200000)
    hist = np.histogram(values, bins)[0]
    mean, sigma = gaussian_fit(hist, bins)
    assert abs(mean - 0.5) < 0.05 and abs(sigma - 2.0) < 0.1
    q = histogram_quantiles(hist[None, :], bins)
    assert np.allclose(q[:, 0], np.quantile(values, [0.25, 0.5, 0.75]), atol=0.05)
    assert gaussian_fit(np.zeros(60), bins) == (None, None)


def test_shape_residuals_use_the_fitted_profile():
    from obiwan_h5.plot.accumulate import CHI_BINS
    from obiwan_h5.plot.thesis import Residuals

    batch = {"obiwan_mask": np.array([1, 1, 1, 0], np.uint8),
             "tractor_type": np.array([b"EXP ", b"DEV ", b"PSF ", b"EXP "]),
             "rhalf": np.array([1.0, 1.0, 1.0, 1.0], np.float32)}
    for model, value, ivar in (("shapeexp", 1.5, 4.0), ("shapedev", 0.5, 16.0)):
        batch[f"tractor_{model}_r"] = np.full(4, value, np.float32)
        batch[f"tractor_{model}_r_ivar"] = np.full(4, ivar, np.float32)
    acc = Residuals(set(batch), np.random.default_rng(1), 100)
    assert acc.shapes == ["rhalf"] and acc.flux_bands == []
    acc.add(batch)
    quantities = acc.numbers()["quantities"]
    # EXP: (1.5 - 1) * 2 = +1 (exponential family); DEV, apart: (0.5 - 1) * 4 = -2; PSF and the
    # unrecovered row not used
    hist, dev = np.array(quantities["rhalf"]["hist"]), np.array(quantities["rhalf_dev"]["hist"])
    assert hist.sum() == 1 and hist[np.searchsorted(CHI_BINS, 1.0, side="right") - 1] == 1
    assert dev.sum() == 1 and dev[np.searchsorted(CHI_BINS, -2.0, side="right") - 1] == 1
    assert quantities["rhalf"]["robust_median"] == 1.0 and quantities["rhalf_dev"]["robust_median"] == -2.0


def test_skipped_figures_and_exit_status(dr5_derived, tmp_path, capsys):
    from obiwan_h5 import cli

    some, none = str(tmp_path / "some.h5"), str(tmp_path / "none.h5")
    assert cli.main(["view", dr5_derived, "-o", some, "--columns", "obiwan_mask,gflux,rflux,zflux,mw_transmission_*"]) == 0
    assert cli.main(["view", dr5_derived, "-o", none, "--columns", "ra"]) == 0
    capsys.readouterr()
    assert cli.main(["plot", some, "-o", str(tmp_path / "a"), "--only", "recovery,residuals,systematics"]) == 0
    err = capsys.readouterr().err
    assert "skipped residuals:" in err and "skipped systematics" not in err
    page = open(tmp_path / "a" / "index.html").read()
    assert "Skipped (no data, not drawn)" in page and "<h2>Imaging systematics</h2>" in page
    assert cli.main(["plot", none, "-o", str(tmp_path / "b"), "--only", "recovery,inputs"]) == 1
    assert "none of the chosen figures could be drawn" in capsys.readouterr().err


def test_systematics_of_a_view_without_brickname(thesis_figures, dr5_derived, tmp_path):
    """Each row's brick comes from the brick index: a view without brickname gives the same
    numbers as the file itself."""
    from obiwan_h5 import cli

    view = str(tmp_path / "view.h5")
    assert cli.main(["view", dr5_derived, "-o", view, "--columns", "obiwan_mask,targets_mask"]) == 0
    numbers = make_figures(view, str(tmp_path / "figures"), only="systematics")
    assert numbers["drawn"] == ["systematics"] and numbers["columns_read"] == ["obiwan_mask", "targets_mask"]
    assert numbers["figures"]["systematics"] == thesis_figures[1]["figures"]["systematics"]
    # and on a sparse sample of bricks read in small batches: every row lands in its brick
    sampled = make_figures(view, str(tmp_path / "sampled"), only="systematics", sample=0.5, seed=4, batch_rows=50)
    with h5py.File(dr5_derived, "r") as handle:
        names = [name.decode() for name in handle["bricks/name"][:]]
        n_inj = dict(zip(names, handle["summary/n_inj"][:]))
    used = sampled["bricks"]["names"]
    assert sum(sampled["figures"]["systematics"]["properties"]["ebv"]["n_inj"]) == sampled["rows_used"] == sum(
        n_inj[name] for name in used)
    assert sorted(sampled["figures"]["systematics"]["properties"]["galdepth_g"]["n_inj"]) == sorted(
        n_inj[name] for name in used)  # one brick per bin: each bin holds exactly its brick's rows
