"""Drawing of the imaging-systematics page and the thesis figure families (`plot.thesis`).

Same conventions as `draw`: matplotlib object API on the Agg canvas, a "no data" note
when a figure has nothing to show.
"""

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.ticker import MaxNLocator

from .accumulate import CHI_BINS, SELECTIONS
from .draw import BAND_COLOURS, _array, _figure, _fmt, _mag_limits, _no_data, _save, _yerr
from .stats import MAG_BINS
from .thesis import RESIDUALS, SYSTEMATICS_PROPERTIES

__all__ = ["THESIS_DRAWERS"]

SELECTION_COLOURS = {"desi_elg": "#1f78b4", "eboss_ngc": "#e31a1c", "eboss_sgc": "#ff7f00"}


def _errorbar(ax, x, value, low, high, **style):
    value, low, high = _array(value), _array(low), _array(high)
    shown = np.isfinite(x) & np.isfinite(value)
    if shown.any():
        high = np.where(np.isfinite(high), high, value)
        ax.errorbar(x[shown], value[shown], yerr=_yerr(value[shown], low[shown], high[shown]), capsize=2, **style)
    return shown.any()


def draw_systematics(acc, numbers, path, subtitle):
    props = numbers.get("properties", {})
    fig = _figure(22, 15)
    axes = fig.subplots(4, 5)
    fig.suptitle("Imaging systematics: recovery and selected-target density vs the brick's depth, seeing and "
                 f"extinction\n{subtitle}; overall recovered {_fmt(numbers.get('fraction_recovered'))}", fontsize=14)
    top, bottom = axes[:2].ravel(), axes[2:].ravel()
    names = [name for name, _ in SYSTEMATICS_PROPERTIES]
    for ax_frac, ax_ratio, name in zip(top, bottom, names):
        d = props.get(name)
        if acc.missing or d is None or not d.get("n_bricks"):
            reason = acc.missing or (f"no summary column {name}" if d is None else "no finite values")
            _no_data(ax_frac, reason)
            _no_data(ax_ratio, reason)
            continue
        x = _array(d["centre"])
        ax_frac.set_title(f"recovered fraction vs {name}", fontsize=11)
        _errorbar(ax_frac, x, d["fraction"], d["low"], d["high"], fmt="o-", color="black", ms=5,
                  label=f"all injected ({sum(d['n_inj'])})")
        for sel, label, _ in SELECTIONS:
            s = d["selections"][sel]
            if sum(s["n_true"]):
                _errorbar(ax_frac, x, s["fraction_recovered"], s["fraction_low"], s["fraction_high"], fmt="s--",
                          ms=4, lw=1, color=SELECTION_COLOURS[sel], alpha=0.8, label=f"true-selected {label}")
        ax_frac.set_ylim(-0.03, 1.05)
        ax_ratio.set_title(f"measured / true selected vs {name}", fontsize=11)
        drawn = False
        for sel, label, _ in SELECTIONS:
            s = d["selections"][sel]
            overall = numbers.get("density_ratio", {}).get(sel)
            if _errorbar(ax_ratio, x, s["ratio"], s["ratio_low"], s["ratio_high"], fmt="o-", ms=5,
                         color=SELECTION_COLOURS[sel], label=f"{label} (all: {_fmt(overall, '.2f')})"):
                drawn = True
                if overall is not None:
                    ax_ratio.axhline(overall, color=SELECTION_COLOURS[sel], ls=":", lw=1)
        if not drawn:
            _no_data(ax_ratio, "no true-selected targets" if numbers.get("has_targets") else "no targets_mask")
        else:
            ax_ratio.axhline(1.0, color="0.4", ls="--", lw=1)
            ax_ratio.set_ylabel("N measured-selected / N true-selected", fontsize=9)
            ax_ratio.legend(fontsize=7, loc="best")
        for ax in (ax_frac, ax_ratio):
            if drawn or ax is ax_frac:
                ax.set_xlabel(d["label"], fontsize=10)
                ax.grid(alpha=0.3)
                ax.xaxis.set_major_locator(MaxNLocator(5))
        ax_frac.set_ylabel("recovered fraction", fontsize=9)
        ax_frac.legend(fontsize=7, loc="lower left", title_fontsize=7,
                       title=f"{sum(d['n_bricks'])} bricks in {len(d['n_bricks'])} bins, " + (
                           f"{min(d['n_bricks'])} per bin" if min(d['n_bricks']) == max(d['n_bricks'])
                           else f"{min(d['n_bricks'])}–{max(d['n_bricks'])} per bin"))
    for ax in list(top[len(names):]) + list(bottom[len(names):]):
        ax.set_visible(False)
    _save(fig, path)


def _residual_hist(ax, name, d):
    hist = np.asarray(d["hist"], np.float64)
    width = np.diff(CHI_BINS)
    density = hist / max(hist.sum(), 1) / width
    colour = BAND_COLOURS.get(name[-1], "#444") if name.startswith("flux_") else "#444"
    ax.stairs(density, CHI_BINS, color=colour, lw=1.8, label=f"data ({d['n']}, {d['n_outside_bins']} beyond ±6)")
    grid = np.linspace(CHI_BINS[0], CHI_BINS[-1], 400)
    ax.plot(grid, np.exp(-0.5 * grid ** 2) / np.sqrt(2 * np.pi), "k--", lw=1, label="unit normal")
    if d["fit_sigma"] is not None:
        mean, sigma = d["fit_mean"], d["fit_sigma"]
        ax.plot(grid, np.exp(-0.5 * ((grid - mean) / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma), "k-", lw=1.2,
                label=f"fit: mean {mean:+.2f}, σ {sigma:.2f}")
    ax.axvline(0, color="0.5", ls=":", lw=1)
    ax.set_xlim(CHI_BINS[0], CHI_BINS[-1])
    ax.set_ylim(0, 1.35 * max(density.max(), 0.4))  # room for the legend above the peak
    ax.set_xlabel(RESIDUALS[name], fontsize=10)
    ax.set_ylabel("density", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)


def draw_residuals(acc, numbers, path, subtitle):
    fig = _figure(16, 18)
    axes = fig.subplots(4, 3)
    fig.suptitle(f"Residuals of recovered sources in units of the Tractor σ, with Gaussian fits\n{subtitle}",
                 fontsize=14)
    quantities = numbers.get("quantities", {})
    for ax, name in zip(axes[:2].ravel(), ["flux_g", "flux_r", "flux_z", "rhalf", "e1", "e2"]):
        ax.set_title(name.replace("_", " "), fontsize=12)
        d = quantities.get(name)
        if acc.missing or d is None or not sum(d["hist"]):
            _no_data(ax, acc.missing or ("columns absent" if d is None else "no recovered source with ivar > 0"))
            continue
        _residual_hist(ax, name, d)
    dmag_bins = np.asarray(numbers.get("dmag_bins", [-1.0, 1.0]))
    for row, (key, bins, title, label) in enumerate((
            ("", CHI_BINS, "flux {b} residual / σ vs true {b}", "(Tractor − true) {b} flux / σ (clipped to ±6)"),
            ("dmag_", dmag_bins, "{b} magnitude residual vs true {b}",
             "true − Tractor {b} [mag], both extincted (clipped to ±1)"))):
        for ax, b in zip(axes[2 + row], "grz"):
            ax.set_title(title.format(b=b), fontsize=12)
            d = quantities.get(f"flux_{b}")
            counts = None if d is None else np.asarray(d["dmag_vs_mag" if key else "vs_mag"], np.float64)
            limits = None if counts is None else _mag_limits([counts.sum(axis=1)])
            if acc.missing or limits is None:
                _no_data(ax, acc.missing or "no recovered source with a flux ivar")
                continue
            _versus_magnitude(fig, ax, counts, bins, [d[f"{key}{q}"] for q in ("median", "q25", "q75")], b)
            ax.set_xlim(*limits)
            ax.set_ylabel(label.format(b=b), fontsize=10)
    _save(fig, path)


def _versus_magnitude(fig, ax, counts, bins, lines, band):
    image = ax.pcolormesh(MAG_BINS, bins, np.ma.masked_equal(counts.T, 0), cmap="Greys",
                          norm=LogNorm(vmin=1, vmax=max(counts.max(), 2)))
    centres = 0.5 * (MAG_BINS[1:] + MAG_BINS[:-1])
    median, q25, q75 = (_array(line) for line in lines)
    ax.plot(centres, median, color=BAND_COLOURS[band], lw=2, label="median")
    ax.plot(centres, q25, color=BAND_COLOURS[band], lw=1, ls="--", label="25% / 75%")
    ax.plot(centres, q75, color=BAND_COLOURS[band], lw=1, ls="--")
    ax.axhline(0, color="k", ls=":", lw=1)
    ax.set_ylim(bins[0], bins[-1])
    ax.set_xlabel(f"true de-extincted {band} [AB mag]", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.colorbar(image, ax=ax, label="sources", shrink=0.8)


THESIS_DRAWERS = {"systematics": draw_systematics, "residuals": draw_residuals}
