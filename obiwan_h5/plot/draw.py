"""Drawing of the analysis figures (`obiwan_h5.plot`) from their accumulators' numbers.

Uses matplotlib's object API with the Agg canvas only (no pyplot, no display, and the
caller's matplotlib backend is left alone). Only figures with data are drawn (the runner
skips the others), and within a figure only the panels that have something to show.

Layouts are fixed grids with margins in inches (`grid`), not matplotlib's constrained
layout: measured on the demo, constrained layout drew every figure twice and took about
40 % of the drawing time. Figures are at most about 13 inches (1300 pixels) wide, so that
the index page shows them near full size.
"""

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, NullFormatter

from .accumulate import CHI_BINS, INJECTED_CLASSES, SELECTION_AXES, TYPE_COLUMNS
from .stats import MAG_BINS

__all__ = ["decorate", "draw_astrometry", "draw_confusion", "draw_flux_residuals", "draw_recovery", "draw_skymap",
           "draw_targets", "grid"]

BAND_COLOURS = {"g": "#1a9641", "r": "#d7191c", "z": "#5e3c99"}
DPI = 100
SPARSE_BIN = 5  # completeness/contamination bins with fewer sources are drawn faint, unconnected


def new_figure(width, height, title, subtitle):
    """A figure of `width` x `height` inches with a two-line title at the top."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.suptitle(f"{title}\n{subtitle}", y=1 - 0.08 / height, va="top", fontsize=13)
    return fig


def grid(fig, nrows, ncols, left=0.8, right=0.3, top=0.95, bottom=0.65, wspace=0.75, hspace=0.8, **kwargs):
    """Axes on a fixed grid (a 2-D array); margins and gaps in inches."""
    width, height = fig.get_size_inches()
    panel_w = (width - left - right - wspace * (ncols - 1)) / ncols
    panel_h = (height - top - bottom - hspace * (nrows - 1)) / nrows
    spec = {"left": left / width, "right": 1 - right / width, "top": 1 - top / height, "bottom": bottom / height,
            "wspace": wspace / panel_w, "hspace": hspace / panel_h, **kwargs.pop("gridspec_kw", {})}
    return fig.subplots(nrows, ncols, squeeze=False, gridspec_kw=spec, **kwargs)


def save(fig, path):
    """Write `fig` to `path` at the figures' resolution, on white."""
    fig.savefig(path, dpi=DPI, facecolor="white")


def colorbar(fig, mappable, ax, label, above=False, cax=None):
    """A slim colour bar beside `ax`, taken from its width (or in the axes `cax`); its label
    along it, or (`above`, for short labels in tight grids) on top of it."""
    bar = fig.colorbar(mappable, ax=None if cax else ax, cax=cax, label=None if above else label,
                       fraction=0.06, pad=0.03)
    if isinstance(mappable.norm, LogNorm):
        # counts: plain numbers at 1, 2, 5, 10, ... (log ticks crowd on a short range)
        top = mappable.norm.vmax
        bar.set_ticks([tick for tick in (10 ** k * m for k in range(9) for m in (1, 2, 5)) if tick <= top],
                      labels=None)
        bar.ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        bar.ax.yaxis.set_minor_formatter(NullFormatter())
    if above:
        bar.ax.set_title(label, fontsize=9)
    return bar


def decorate(ax, title, xlabel, ylabel, legend=8.5, **legend_kwargs):
    """Title, axis labels, a legend (font size `legend`; None: no legend) and a light grid."""
    ax.set_title(title, fontsize=11.5)
    ax.set_xlabel(xlabel, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=10)
    if legend:
        ax.legend(fontsize=legend, **legend_kwargs)
    ax.grid(alpha=0.3)


def values(items):
    """A list with None for NaN (numbers.json) as a float array."""
    return np.array([np.nan if v is None else v for v in items], dtype=np.float64)


def yerr(value, low, high):
    """Asymmetric error bars, never negative (Wilson bounds can miss 0 or 1 by rounding)."""
    return [np.maximum(value - low, 0), np.maximum(high - value, 0)]


def note(ax, text, loc="upper left"):
    """A small boxed monospace text in a corner of `ax` (`loc`: ``"upper left"``, ``"lower right"``...)."""
    x, ha = (0.03, "left") if "left" in loc else (0.97, "right")
    y, va = (0.96, "top") if "upper" in loc else (0.04, "bottom")
    ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize=9.5, family="monospace",
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.7", "alpha": 0.9})


def fmt(value, spec=".3f"):
    """`value` formatted with `spec`, or ``"n/a"`` when it is None or not finite."""
    return "n/a" if value is None or not np.isfinite(value) else format(value, spec)


def mag_limits(counts_list):
    """x limits around the magnitude bins holding any source, or None."""
    used = np.zeros(len(MAG_BINS) - 1, bool)
    for counts in counts_list:
        used |= np.asarray(counts) > 0
    if not used.any():
        return None
    index = np.flatnonzero(used)
    return MAG_BINS[index[0]] - 0.2, MAG_BINS[index[-1] + 1] + 0.2


CENTRES = 0.5 * (MAG_BINS[1:] + MAG_BINS[:-1])


# ----------------------------------------------------------------------------- recovery

def draw_recovery(acc, numbers, path, subtitle):
    """Recovered fraction per band against true magnitude (Wilson intervals), and the counts below."""
    fig = new_figure(10, 7, "Recovered fraction vs true magnitude", f"{subtitle}; overall recovered "
                     f"{fmt(numbers['fraction_recovered'])} ({numbers['n_recovered']}/{numbers['n_rows']})")
    (top,), (bottom,) = grid(fig, 2, 1, left=0.9, top=0.85, hspace=0.15, sharex=True,
                             gridspec_kw={"height_ratios": [3, 1]})
    bands = {b: d for b, d in numbers["bands"].items() if sum(d["n"])}
    top.axhline(0.5, color="0.5", ls="--", lw=1)
    for b, d in bands.items():
        show = np.asarray(d["n"]) > 0
        frac, low, high = values(d["fraction"]), values(d["low"]), values(d["high"])
        m50 = d["mag50"]
        label = f"{b}: 50% at {m50:.2f} mag" if m50 is not None else f"{b}: 50% not reached"
        colour = BAND_COLOURS[b]
        top.errorbar(CENTRES[show], frac[show], yerr=yerr(frac[show], low[show], high[show]),
                     fmt="o-", ms=4, lw=1.3, capsize=2, color=colour, label=label)
        if m50 is not None:
            top.axvline(m50, color=colour, ls=":", lw=1.5)
            top.plot([m50], [0.5], marker="D", ms=9, color=colour, mec="black", zorder=5)
        bottom.stairs(d["n"], MAG_BINS, color=colour, lw=1.5, label=b)
    top.set_xlim(*mag_limits([d["n"] for d in bands.values()]))
    top.set_ylim(-0.03, 1.05)
    top.set_ylabel("recovered fraction", fontsize=12)
    top.legend(loc="lower left", fontsize=11, title="band (◆ = 50% point)")
    top.grid(alpha=0.3)
    bottom.set_ylabel("injected\nper 0.2 mag", fontsize=11)
    bottom.set_xlabel(f"true de-extincted magnitude [AB mag]  (from {numbers['magnitude_source']})", fontsize=11)
    bottom.legend(loc="upper left", fontsize=9, ncol=3)
    bottom.grid(alpha=0.3)
    save(fig, path)


# ------------------------------------------------------------------------ flux residuals

def draw_flux_residuals(acc, numbers, path, subtitle):
    """Per band: the histogram of the flux residuals of recovered sources, and of the
    residuals over σ against a unit Gaussian."""
    bands = [b for b, d in numbers["bands"].items() if d["n"]]
    fig = new_figure(4.2 * len(bands) + 0.4, 8.5, "Flux residuals of recovered sources: Tractor flux − injected "
                     "flux, both as added to the images (extincted)", subtitle)
    axes = grid(fig, 2, len(bands), top=1.0, hspace=0.75)
    centres = 0.5 * (CHI_BINS[1:] + CHI_BINS[:-1])
    width = CHI_BINS[1] - CHI_BINS[0]
    gauss_x = np.linspace(CHI_BINS[0], CHI_BINS[-1], 200)
    gauss = np.exp(-0.5 * gauss_x ** 2) / np.sqrt(2 * np.pi)
    for column, b in enumerate(bands):
        raw, norm = axes[0, column], axes[1, column]
        d = numbers["bands"][b]
        colour = BAND_COLOURS[b]
        delta = acc.sample[b].data["delta"]
        median, sigma = d["median_delta"], d["sigma_delta"]
        half = 5 * sigma if sigma and np.isfinite(sigma) and sigma > 0 else max(np.ptp(delta), 1e-3)
        lo, hi = median - half, median + half
        outside = int(np.sum((delta < lo) | (delta > hi)))
        raw.stairs(np.histogram(delta, bins=50, range=(lo, hi))[0], np.linspace(lo, hi, 51), fill=True,
                   color=colour, alpha=0.75)
        raw.axvline(0, color="black", lw=1)
        raw.axvline(median, color="black", ls="--", lw=1)
        sampled = "" if d["sample_complete"] else f"\n(sample of {d['n_sample']})"
        note(raw, f"N      = {d['n']}{sampled}\nmedian = {median:.4f}\nσ_rob  = {sigma:.4f}\noutside: {outside}")
        raw.set_title(f"{b} band", fontsize=12)
        raw.set_xlabel(f"Δflux = measured − injected {b} flux [nanomaggy]", fontsize=10)
        raw.set_ylabel("sources per bin", fontsize=10)
        density = np.asarray(d["chi_hist"]) / (d["n"] * width)
        norm.stairs(density, CHI_BINS, fill=True, color=colour, alpha=0.6, label="data")
        norm.plot(gauss_x, gauss, color="black", lw=1.6, ls="--", label="unit Gaussian")
        norm.set_ylim(0, 1.15 * max(np.nanmax(density, initial=0), 0.4))
        note(norm, f"median = {d['median_chi']:.3f}\nσ_rob  = {d['sigma_chi']:.3f}\n|Δ/σ|>6: {d['n_chi_outside_bins']}")
        norm.set_xlabel(f"Δflux / σ,  σ = 1/√flux_ivar ({b})", fontsize=10)
        norm.set_ylabel("probability density", fontsize=10)
        norm.legend(loc="upper right", fontsize=9)
        norm.set_xlim(centres[0] - width / 2, centres[-1] + width / 2)
    save(fig, path)


# ---------------------------------------------------------------------------- astrometry

def draw_astrometry(acc, numbers, path, subtitle):
    """Δdec against Δra·cos(dec) of recovered sources, with both marginal histograms and the match radius."""
    fig = new_figure(9, 8.5, "Astrometric residuals of recovered sources (Tractor − injected)", subtitle)
    spec = fig.add_gridspec(2, 3, left=0.1, right=0.9, bottom=0.08, top=0.885, wspace=0.05, hspace=0.05,
                            width_ratios=[4, 1.3, 0.2], height_ratios=[1.3, 4])
    main, top, right = fig.add_subplot(spec[1, 0]), fig.add_subplot(spec[0, 0]), fig.add_subplot(spec[1, 1])
    text, cax = fig.add_subplot(spec[0, 1:]), fig.add_subplot(spec[1, 2])
    text.axis("off")
    dra, ddec = acc.sample.data["dra"], acc.sample.data["ddec"]
    spread = max(numbers["sigma_dra"] or 0, numbers["sigma_ddec"] or 0)
    half = min(float(numbers["match_radius"] or 1.0), max(6 * spread, 0.05))
    edges = np.linspace(-half, half, 49)
    counts, _, _ = np.histogram2d(dra, ddec, bins=[edges, edges])
    mesh = main.pcolormesh(edges, edges, np.ma.masked_equal(counts.T, 0), cmap="viridis",
                           norm=LogNorm(vmin=1, vmax=max(counts.max(), 2)))
    for ax in (main, top):
        ax.axvline(0, color="0.5", lw=0.8)
    for ax in (main, right):
        ax.axhline(0, color="0.5", lw=0.8)
    main.set_xlim(-half, half)
    main.set_ylim(-half, half)
    main.set_xlabel("Δra·cos(dec)  [arcsec]", fontsize=12)
    main.set_ylabel("Δdec  [arcsec]", fontsize=12)
    top.stairs(np.histogram(dra, edges)[0], edges, fill=True, color="#2c7fb8", label="Δra·cos(dec)")
    top.set_xlim(-half, half)
    top.tick_params(labelbottom=False)
    top.set_ylabel("N")
    top.legend(fontsize=9, loc="upper left")
    right.stairs(np.histogram(ddec, edges)[0], edges, fill=True, orientation="horizontal", color="#de2d26",
                 label="Δdec")
    right.set_ylim(-half, half)
    right.tick_params(labelleft=False)
    right.set_xlabel("N")
    right.legend(fontsize=9, loc="upper right")
    outside = int(np.sum((np.abs(dra) > half) | (np.abs(ddec) > half)))
    sampled = "" if numbers["sample_complete"] else f" (sample {numbers['n_sample']})"
    text.text(0.05, 0.95, f"N = {numbers['n']}{sampled}\nΔra·cos(dec): median {numbers['median_dra']:+.3f}″\n"
              f"  σ_rob {numbers['sigma_dra']:.3f}″\nΔdec: median {numbers['median_ddec']:+.3f}″\n"
              f"  σ_rob {numbers['sigma_ddec']:.3f}″\nbeyond axes: {outside}",
              transform=text.transAxes, va="top", ha="left", fontsize=10, family="monospace")
    colorbar(fig, mesh, None, "sources per bin", cax=cax)
    save(fig, path)


# ----------------------------------------------------------------------------- confusion

def draw_confusion(acc, numbers, path, subtitle):
    """The confusion matrix: injected morphology class against Tractor type, row fractions and counts."""
    rows = [INJECTED_CLASSES.index(name) for name in numbers["rows_shown"]]
    columns = [TYPE_COLUMNS.index(name) for name in numbers["columns_shown"]]
    fig = new_figure(max(1.15 * len(columns) + 3.6, 7.5), 1.0 * len(rows) + 2.4,
                     "Injected morphology vs Tractor type (rows normalised)", subtitle)
    ((ax,),) = grid(fig, 1, 1, left=1.9, right=0.2, top=0.95, bottom=0.75)
    table = np.asarray(numbers["counts"], np.int64)[np.ix_(rows, columns)]
    totals = table.sum(axis=1)
    fractions = table / totals[:, None]
    image = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(columns)):
            ax.text(j, i, f"{fractions[i, j]:.2f}\n({table[i, j]})", ha="center", va="center", fontsize=10.5,
                    color="white" if fractions[i, j] > 0.55 else "black")
    if "unrecovered" in numbers["columns_shown"]:
        ax.axvline(len(columns) - 1.5, color="black", lw=1.5)
    labels = {"PSF-like": "PSF-like (point)", "EXP-like": "EXP-like (n≈1)", "DEV-like": "DEV-like (n≈4)",
              "unknown": "unknown"}
    ax.set_yticks(range(len(rows)), [f"{labels[INJECTED_CLASSES[i]]}\nN={totals[k]}" for k, i in enumerate(rows)],
                  fontsize=10.5)
    ax.set_xticks(range(len(columns)), [TYPE_COLUMNS[j] for j in columns], fontsize=11)
    ax.set_xlabel("Tractor type of the matched source (unrecovered: no match)", fontsize=11)
    colorbar(fig, image, ax, "fraction of the injected class")
    save(fig, path)


# ------------------------------------------------------------------------------- targets

def draw_targets(acc, numbers, path, subtitle):
    """Per selection: completeness and contamination against true magnitude, over the
    true- and measured-selected counts (grey), the magnitudes beyond its cut shaded."""
    selections = [(sel, label, band) for sel, label, band in SELECTION_AXES
                  if sel in numbers["selections"] and mag_limits([numbers["selections"][sel]["hist_true"],
                                                                  numbers["selections"][sel]["hist_measured"]])]
    fig = new_figure(4.2 * len(selections) + 0.4, 7, "Target selection on measured vs true fluxes", subtitle)
    axes = grid(fig, 1, len(selections), left=0.75, right=0.75, wspace=1.3, bottom=2.1)[0]
    for ax, (sel, label, band) in zip(axes, selections):
        d = numbers["selections"][sel]
        ax.set_title(label, fontsize=12)
        limits = mag_limits([d["hist_true"], d["hist_measured"]])
        twin = ax.twinx()
        brightest, faintest = d["magnitude_limits"]  # None: no limit on that side
        for lo, hi in ((limits[0], brightest), (faintest, limits[1])):
            if lo is not None and hi is not None and hi > lo:
                twin.axvspan(lo, hi, color="0.92", zorder=0)
        for key, denominator, marker, colour, total in (
                ("completeness", "hist_true", "o", "#2c7fb8",
                 f"{fmt(d['completeness'])} ({d['n_true_and_measured']}/{d['n_true']})"),
                ("contamination", "hist_measured", "s", "#e6550d",
                 f"{fmt(d['contamination_within_cut'])} within the cut")):
            value, low, high = (values(d[f"{key}_{part}"]) for part in ("bins", "low", "high"))
            counts = np.asarray(d[denominator])
            face = colour if marker == "o" else "white"
            solid = np.isfinite(value) & (counts >= SPARSE_BIN)
            sparse = np.isfinite(value) & (counts < SPARSE_BIN)
            shown = np.where(solid, value, np.nan)  # NaN breaks the line across sparse or empty bins
            ax.errorbar(CENTRES, shown, yerr=yerr(np.nan_to_num(shown), np.nan_to_num(low), np.nan_to_num(high)),
                        fmt=marker + "-", ms=5, capsize=2, color=colour, mfc=face, label=f"{key}: {total}")
            if sparse.any():
                ax.errorbar(CENTRES[sparse], value[sparse], yerr=yerr(value[sparse], low[sparse], high[sparse]),
                            fmt=marker, ms=5, capsize=2, color=colour, mfc=face, alpha=0.3)
        twin.stairs(d["hist_true"], MAG_BINS, color="0.55", lw=1.2, label="true-selected")
        twin.stairs(d["hist_measured"], MAG_BINS, color="0.55", lw=1.2, ls=":", label="measured-selected")
        twin.set_ylim(0, 1.1 * max(max(d["hist_true"]), max(d["hist_measured"]), 1))
        twin.set_ylabel("sources per 0.2 mag (grey)", fontsize=10, color="0.4")
        twin.tick_params(colors="0.4")
        ax.set_zorder(twin.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.set_xlim(*limits)
        ax.set_ylim(-0.03, 1.05)
        ax.set_xlabel(f"true de-extincted {band} [AB mag]", fontsize=11)
        ax.set_ylabel("fraction", fontsize=11)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        twin_handles, twin_labels = twin.get_legend_handles_labels()
        ax.legend(handles + twin_handles, labels + twin_labels, loc="upper center", bbox_to_anchor=(0.5, -0.12),
                  ncol=1, fontsize=9, title_fontsize=8.5, borderaxespad=0,
                  title=f"shaded: beyond the cut ({d['n_measured_beyond_cut']} measured-selected there)\n"
                        f"faint points: bins with < {SPARSE_BIN} sources")
    save(fig, path)


# -------------------------------------------------------------------------------- skymap

def wrap_ra(ra):
    """RA in [0, 360) or in [-180, 180), whichever spans less (bricks across RA 0 stay together)."""
    wrapped = (ra + 180.0) % 360.0 - 180.0
    if len(ra) and np.ptp(wrapped) < np.ptp(ra):
        return wrapped
    return ra


def draw_skymap(acc, numbers, path, subtitle):
    """The recovered fraction and the g galaxy depth of each brick, as brick-sized patches on
    the sky."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    fig = new_figure(13, 6, "Per-brick summary on the sky (brick centres)", subtitle)
    axes = grid(fig, 1, 2, top=1.0, wspace=1.5, right=0.9)[0]
    table = acc.table
    ra, dec = wrap_ra(table["ra"]), table["dec"]
    height = 0.25
    if "brick_area" in table and np.all(np.isfinite(table["brick_area"])):
        band = (np.sin(np.radians(dec + height / 2)) - np.sin(np.radians(dec - height / 2))) * np.degrees(1.0)
        width = table["brick_area"] / band
    else:
        width = height / np.cos(np.radians(dec))
    panels = (("frac_recovered", "recovered fraction", "fraction recovered (n_rec / n_inj)", "viridis"),
              ("galdepth_g", "galaxy depth g (galdepth_g)", "5σ galaxy depth g [AB mag]", "magma"))
    for ax, (name, title, label, cmap) in zip(axes, panels):
        brick_values = table[name]
        finite = brick_values[np.isfinite(brick_values)]
        vmin, vmax = (finite.min(), finite.max()) if len(finite) else (0, 1)
        if vmin == vmax:
            vmin, vmax = vmin - 0.01, vmax + 0.01
        if len(ra) <= 20000:
            patches = [Rectangle((r - w / 2, d - height / 2), w, height) for r, d, w in zip(ra, dec, width)]
            artist = PatchCollection(patches, cmap=cmap, edgecolor="0.3", linewidth=0.3)
            artist.set_array(np.ma.masked_invalid(brick_values))
            artist.set_clim(vmin, vmax)
            ax.add_collection(artist)
        else:
            artist = ax.scatter(ra, dec, c=brick_values, s=2, marker="s", cmap=cmap, vmin=vmin, vmax=vmax)
        pad = 0.3
        sky_panel(ax, (ra.min() - np.max(width) / 2 - pad, ra.max() + np.max(width) / 2 + pad),
                  (dec.min() - height / 2 - pad, dec.max() + height / 2 + pad), np.radians(np.mean(dec)),
                  f"{title}: median {fmt(numbers[name]['median'])}", sizes=(12, 11))
        colorbar(fig, artist, ax, label)
    save(fig, path)


def sky_panel(ax, ra_range, dec_range, dec_mid, title, sizes=(12, 11)):
    """Frame a map of the sky on `ax`: RA growing to the left (east on the left) over
    `ra_range`, `dec_range`, an aspect true at declination `dec_mid` (radians), the title
    and axis labels at font `sizes` (title, labels), a light grid."""
    ax.set_xlim(ra_range[1], ra_range[0])
    ax.set_ylim(*dec_range)
    ax.set_aspect(1.0 / max(np.cos(dec_mid), 0.05))
    ax.set_title(title, fontsize=sizes[0])
    ax.set_xlabel("RA [deg]", fontsize=sizes[1])
    ax.set_ylabel("Dec [deg]", fontsize=sizes[1])
    ax.grid(alpha=0.3)
