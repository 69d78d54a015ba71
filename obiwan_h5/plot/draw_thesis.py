"""Drawing of the imaging-systematics page and the residuals figure (`plot.thesis`).

Same conventions as `draw`: matplotlib object API on the Agg canvas, fixed layouts, only
the panels that have data.
"""

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from .accumulate import CHI_BINS, SELECTION_AXES
from .draw import BAND_COLOURS, CENTRES, colorbar, fmt, grid, mag_limits, new_figure, save, values, yerr
from .stats import MAG_BINS
from .thesis import RESIDUALS, SHAPES

__all__ = ["draw_residuals", "draw_systematics"]

SELECTION_COLOURS = {"desi_elg": "#1f78b4", "eboss_ngc": "#e31a1c", "eboss_sgc": "#ff7f00"}
# columns of the systematics page: (summary column stem, axis label); ebv has no band
SYSTEMATICS_GROUPS = (("galdepth", "5σ galaxy depth [AB mag]"), ("psfdepth", "5σ PSF depth [AB mag]"),
                      ("psfsize", "PSF FWHM [arcsec]"), ("ebv", "E(B−V) [mag]"))
BAND_MARKERS = {"g": "o", "r": "s", "z": "^", "": "D"}


def _errorbar(ax, x, value, low, high, **style):
    value, low, high = values(value), values(low), values(high)
    shown = np.isfinite(x) & np.isfinite(value)
    if shown.any():
        high = np.where(np.isfinite(high), high, value)
        ax.errorbar(x[shown], value[shown], yerr=yerr(value[shown], low[shown], high[shown]), capsize=2, **style)
    return shown.any()


def _group_properties(numbers, stem):
    """(band, numbers of the property) of one column of the page, those with bricks."""
    names = [("", stem)] if stem == "ebv" else [(b, f"{stem}_{b}") for b in "grz"]
    props = numbers["properties"]
    return [(b, props[name]) for b, name in names if props.get(name, {}).get("n_bricks")]


def draw_systematics(acc, numbers, path, subtitle):
    """Recovered fraction and each selection's measured/true density ratio in bins of each
    imaging property of the bricks."""
    groups = [(stem, label, found) for stem, label in SYSTEMATICS_GROUPS
              if (found := _group_properties(numbers, stem))]
    rows = [("recovered fraction\n(all injected)", None)]
    rows += [(f"{label}\nmeasured / true selected", sel) for sel, label, _ in SELECTION_AXES
             if any(sum(prop["selections"][sel]["n_true"]) for _, _, found in groups for _, prop in found)]
    fig = new_figure(13, 2.45 * len(rows) + 1.9, "Imaging systematics: recovery and selected-target density "
                     "vs the brick's depth, seeing and extinction",
                     f"{subtitle}; overall recovered {fmt(numbers['fraction_recovered'])}")
    axes = grid(fig, len(rows), len(groups), left=1.25, right=0.2, top=1.35, bottom=0.6, wspace=0.45,
                hspace=0.35, sharex="col", sharey="row")
    for column, (stem, label, found) in enumerate(groups):
        for row, (row_label, sel) in enumerate(rows):
            ax = axes[row, column]
            for band, prop in found:
                x = values(prop["centre"])
                style = {"fmt": BAND_MARKERS[band] + "-", "ms": 4.5, "lw": 1.2,
                         "color": BAND_COLOURS.get(band, "black")}
                if sel is None:
                    _errorbar(ax, x, prop["fraction"], prop["low"], prop["high"], **style)
                else:
                    s = prop["selections"][sel]
                    _errorbar(ax, x, s["ratio"], s["ratio_low"], s["ratio_high"], **style)
            if sel is not None:
                ax.axhline(1.0, color="0.4", ls="--", lw=1)
                overall = numbers["density_ratio"].get(sel)
                if overall is not None:
                    ax.axhline(overall, color="black", ls=":", lw=1.2)
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(4))
            if column == 0:
                ax.set_ylabel(row_label, fontsize=10)
            if row == len(rows) - 1:
                ax.set_xlabel(label, fontsize=10)
        bricks = found[0][1]["n_bricks"]
        each = f"{min(bricks)}–{max(bricks)} bricks" if min(bricks) != max(bricks) else (
            f"{min(bricks)} brick" + ("s" if min(bricks) > 1 else ""))
        axes[0, column].set_title(f"{len(bricks)} bins of {each}", fontsize=9.5, color="0.3")
    axes[0, 0].set_ylim(max(0.0, axes[0, 0].get_ylim()[0]), min(1.02, axes[0, 0].get_ylim()[1]))
    handles = [Line2D([], [], color=BAND_COLOURS[b], marker=BAND_MARKERS[b], label=f"{b} band") for b in "grz"]
    handles += [Line2D([], [], color="black", marker="D", label="E(B−V)"),
                Line2D([], [], color="black", ls=":", label="measured/true over all bricks"),
                Line2D([], [], color="0.4", ls="--", label="ratio 1")]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.72 / fig.get_size_inches()[1]),
               ncol=len(handles), fontsize=10, frameon=False)
    save(fig, path)


def _residual_hist(ax, name, d, dev):
    width = np.diff(CHI_BINS)
    density = np.asarray(d["hist"], np.float64) / max(d["n"], 1) / width
    colour = BAND_COLOURS.get(name[-1], "#444") if name.startswith("flux_") else "#222"
    ax.stairs(density, CHI_BINS, color=colour, lw=1.8, label=f"data ({d['n']}, {d['n_outside_bins']} beyond ±6)")
    grid_x = np.linspace(CHI_BINS[0], CHI_BINS[-1], 200)
    ax.plot(grid_x, np.exp(-0.5 * grid_x ** 2) / np.sqrt(2 * np.pi), "k--", lw=1, label="unit normal")
    if d["fit_sigma"] is not None:
        mean, sigma = d["fit_mean"], d["fit_sigma"]
        ax.plot(grid_x, np.exp(-0.5 * ((grid_x - mean) / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma), "k-", lw=1.2,
                label=f"fit: mean {mean:+.2f}, σ {sigma:.2f}")
    peak = density.max()
    if dev is not None and dev["n"]:
        dev_density = np.asarray(dev["hist"], np.float64) / dev["n"] / width
        ax.stairs(dev_density, CHI_BINS, color="0.6", lw=1.4, fill=True, alpha=0.35,
                  label=f"DEV fits ({dev['n']}; median {fmt(dev['robust_median'], '+.1f')}, "
                        f"{dev['n_outside_bins']} beyond ±6)")
        peak = max(peak, dev_density.max())
    ax.axvline(0, color="0.5", ls=":", lw=1)
    ax.set_xlim(CHI_BINS[0], CHI_BINS[-1])
    ax.set_ylim(0, 1.45 * max(peak, 0.4))  # room for the legend above the peak
    ax.set_xlabel(RESIDUALS[name], fontsize=10)
    ax.set_ylabel("density", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)


def draw_residuals(acc, numbers, path, subtitle):
    """Histograms of the σ-normalised residuals (flux per band, shapes) with a Gaussian fit,
    and per band the residuals and magnitude differences against true magnitude."""
    quantities = numbers["quantities"]
    bands = [b for b in "grz" if quantities.get(f"flux_{b}", {}).get("n")]
    shapes = [key for key in SHAPES if quantities.get(key, {}).get("n") or quantities.get(f"{key}_dev", {}).get("n")]
    rows = [row for row in (bands, shapes) if row] + [bands] * (2 if bands else 0)
    fig = new_figure(13, 3.75 * len(rows) + 1.2, "Residuals of recovered sources in units of the Tractor σ, "
                     "with Gaussian fits", subtitle)
    axes = grid(fig, len(rows), 3, left=0.95, right=0.35, top=1.0, bottom=0.6, wspace=1.3, hspace=0.75)
    for ax in axes.ravel():
        ax.set_visible(False)
    row = 0
    for names in ([f"flux_{b}" for b in bands], shapes):
        if not names:
            continue
        for ax, name in zip(axes[row], names):
            ax.set_visible(True)
            ax.set_title(name.replace("_", " ") + ("" if name.startswith("flux") else " (EXP, REX, SIMP fits)"),
                         fontsize=12)
            _residual_hist(ax, name, quantities.get(name, {"n": 0, "hist": np.zeros(len(CHI_BINS) - 1),
                                                           "n_outside_bins": 0, "fit_sigma": None}),
                           None if name.startswith("flux") else quantities.get(f"{name}_dev"))
        row += 1
    dmag_bins = np.asarray(numbers["dmag_bins"])
    for key, bins, title, label in (
            ("", CHI_BINS, "flux {b} residual / σ vs true {b}", "(Tractor − true) {b} flux / σ (clipped to ±6)"),
            ("dmag_", dmag_bins, "{b} magnitude residual vs true {b}",
             "true − Tractor {b} [mag], both\nextincted (clipped to ±1)")):
        if not bands:
            break
        for ax, b in zip(axes[row], bands):
            ax.set_visible(True)
            d = quantities[f"flux_{b}"]
            counts = np.asarray(d["dmag_vs_mag" if key else "vs_mag"], np.float64)
            ax.set_title(title.format(b=b), fontsize=12)
            _versus_magnitude(fig, ax, counts, bins, [d[f"{key}{q}"] for q in ("median", "q25", "q75")], b)
            limits = mag_limits([counts.sum(axis=1)])
            if limits:
                ax.set_xlim(*limits)
            ax.set_ylabel(label.format(b=b), fontsize=9.5)
        row += 1
    save(fig, path)


def _versus_magnitude(fig, ax, counts, bins, lines, band):
    image = ax.pcolormesh(MAG_BINS, bins, np.ma.masked_equal(counts.T, 0), cmap="Greys",
                          norm=LogNorm(vmin=1, vmax=max(counts.max(), 2)))
    median, q25, q75 = (values(line) for line in lines)
    ax.plot(CENTRES, median, color=BAND_COLOURS[band], lw=2, label="median")
    ax.plot(CENTRES, q25, color=BAND_COLOURS[band], lw=1, ls="--", label="25% / 75%")
    ax.plot(CENTRES, q75, color=BAND_COLOURS[band], lw=1, ls="--")
    ax.axhline(0, color="k", ls=":", lw=1)
    ax.set_ylim(bins[0], bins[-1])
    ax.set_xlabel(f"true de-extincted {band} [AB mag]", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    colorbar(fig, image, ax, "N", above=True)
