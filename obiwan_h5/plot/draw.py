"""Drawing of the analysis figures (`obiwan_h5.plot`) from their accumulators' numbers.

Uses matplotlib's object API with the Agg canvas only (no pyplot, no display, and the
caller's matplotlib backend is left alone). A figure whose data are missing or empty still
renders, with a "no data" note saying why.
"""

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from .accumulate import CHI_BINS, INJECTED_CLASSES, TYPE_COLUMNS
from .stats import MAG_BINS

__all__ = ["DRAWERS"]

BAND_COLOURS = {"g": "#1a9641", "r": "#d7191c", "z": "#5e3c99"}
DPI = 100
SPARSE_BIN = 5  # completeness/contamination bins with fewer sources are drawn faint, unconnected


def _figure(width, height):
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig, path):
    fig.savefig(path, dpi=DPI, facecolor="white")


def _array(values):
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _yerr(value, low, high):
    """Asymmetric error bars, never negative (Wilson bounds can miss 0 or 1 by rounding)."""
    return [np.maximum(value - low, 0), np.maximum(high - value, 0)]


def _no_data(ax, reason):
    ax.text(0.5, 0.5, f"no data\n{reason}", transform=ax.transAxes, ha="center", va="center",
            fontsize=13, color="0.4", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _note(ax, text, loc="upper left"):
    x, ha = (0.03, "left") if "left" in loc else (0.97, "right")
    y, va = (0.96, "top") if "upper" in loc else (0.04, "bottom")
    ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize=10, family="monospace",
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.7", "alpha": 0.9})


def _fmt(value, spec=".3f"):
    return "n/a" if value is None or not np.isfinite(value) else format(value, spec)


def _mag_limits(counts_list):
    used = np.zeros(len(MAG_BINS) - 1, bool)
    for counts in counts_list:
        used |= np.asarray(counts) > 0
    if not used.any():
        return None
    index = np.flatnonzero(used)
    return MAG_BINS[index[0]] - 0.2, MAG_BINS[index[-1] + 1] + 0.2


# ----------------------------------------------------------------------------- recovery

def draw_recovery(acc, numbers, path, subtitle):
    fig = _figure(9.5, 7)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    overall = numbers.get("fraction_recovered")
    fig.suptitle(f"Recovered fraction vs true magnitude\n{subtitle}; overall recovered "
                 f"{_fmt(overall)} ({numbers.get('n_recovered', 0)}/{numbers.get('n_rows', 0)})", fontsize=13)
    bands = numbers.get("bands", {})
    limits = _mag_limits([bands[b]["n"] for b in bands])
    if acc.missing or limits is None:
        _no_data(top, acc.missing or "no injected sources with a finite true magnitude")
        _no_data(bottom, "")
        _save(fig, path)
        return
    centres = 0.5 * (MAG_BINS[1:] + MAG_BINS[:-1])
    top.axhline(0.5, color="0.5", ls="--", lw=1)
    for b, d in bands.items():
        n = np.asarray(d["n"])
        show = n > 0
        frac, low, high = _array(d["fraction"]), _array(d["low"]), _array(d["high"])
        m50 = d["mag50"]
        label = f"{b}: 50% at {m50:.2f} mag" if m50 is not None else f"{b}: 50% not reached"
        colour = BAND_COLOURS[b]
        top.errorbar(centres[show], frac[show], yerr=_yerr(frac[show], low[show], high[show]),
                     fmt="o-", ms=4, lw=1.3, capsize=2, color=colour, label=label)
        if m50 is not None:
            top.axvline(m50, color=colour, ls=":", lw=1.5)
            top.plot([m50], [0.5], marker="D", ms=9, color=colour, mec="black", zorder=5)
        bottom.stairs(n, MAG_BINS, color=colour, lw=1.5, label=b)
    top.set_xlim(*limits)
    top.set_ylim(-0.03, 1.05)
    top.set_ylabel("recovered fraction", fontsize=12)
    top.legend(loc="lower left", fontsize=11, title="band (◆ = 50% point)")
    top.grid(alpha=0.3)
    bottom.set_ylabel("injected\nper 0.2 mag", fontsize=11)
    bottom.set_xlabel("true de-extincted magnitude (simcat flux / mw_transmission) [AB mag]", fontsize=12)
    bottom.legend(loc="upper left", fontsize=9, ncol=3)
    bottom.grid(alpha=0.3)
    _save(fig, path)


# ------------------------------------------------------------------------ flux residuals

def draw_flux_residuals(acc, numbers, path, subtitle):
    fig = _figure(15, 8.5)
    axes = fig.subplots(2, 3)
    fig.suptitle("Flux residuals of recovered sources: Tractor flux − injected flux, both as added to the "
                 f"images (extincted)\n{subtitle}", fontsize=13)
    bands = numbers.get("bands", {})
    centres = 0.5 * (CHI_BINS[1:] + CHI_BINS[:-1])
    width = CHI_BINS[1] - CHI_BINS[0]
    grid = np.linspace(CHI_BINS[0], CHI_BINS[-1], 400)
    gauss = np.exp(-0.5 * grid ** 2) / np.sqrt(2 * np.pi)
    for column, b in enumerate(("g", "r", "z")):
        raw, norm = axes[0, column], axes[1, column]
        d = bands.get(b)
        if acc.missing or d is None or d["n"] == 0:
            reason = acc.missing or ("no Tractor flux columns for this band" if d is None
                                     else "no recovered source with a measured flux")
            _no_data(raw, reason)
            _no_data(norm, reason)
            raw.set_title(f"{b} band", fontsize=12)
            continue
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
        _note(raw, f"N      = {d['n']}{sampled}\nmedian = {median:.4f}\nσ_rob  = {sigma:.4f}\n"
                   f"outside: {outside}")
        raw.set_title(f"{b} band", fontsize=12)
        raw.set_xlabel(f"Δflux = measured − injected {b} flux  [nanomaggy]", fontsize=11)
        raw.set_ylabel("sources per bin", fontsize=11)
        total = d["n"]
        density = np.asarray(d["chi_hist"]) / (total * width)
        norm.stairs(density, CHI_BINS, fill=True, color=colour, alpha=0.6, label="data")
        norm.plot(grid, gauss, color="black", lw=1.6, ls="--", label="unit Gaussian")
        norm.plot(centres, density, alpha=0)  # keeps autoscale on the data
        _note(norm, f"median = {d['median_chi']:.3f}\nσ_rob  = {d['sigma_chi']:.3f}\n"
                    f"|Δ/σ|>6: {d['n_chi_outside_bins']}")
        norm.set_xlabel(f"Δflux / σ,  σ = 1/√flux_ivar ({b})", fontsize=11)
        norm.set_ylabel("probability density", fontsize=11)
        norm.legend(loc="upper right", fontsize=10)
        norm.set_xlim(CHI_BINS[0], CHI_BINS[-1])
    _save(fig, path)


# ---------------------------------------------------------------------------- astrometry

def draw_astrometry(acc, numbers, path, subtitle):
    fig = _figure(9, 8.5)
    axd = fig.subplot_mosaic([["top", "text"], ["main", "right"]], width_ratios=[4, 1.3],
                             height_ratios=[1.3, 4])
    fig.suptitle(f"Astrometric residuals of recovered sources (Tractor − injected)\n{subtitle}", fontsize=13)
    axd["text"].axis("off")
    main = axd["main"]
    if acc.missing or numbers["n"] == 0:
        _no_data(main, acc.missing or "no recovered sources")
        axd["top"].axis("off")
        axd["right"].axis("off")
        _save(fig, path)
        return
    dra, ddec = acc.sample.data["dra"], acc.sample.data["ddec"]
    spread = max(numbers["sigma_dra"] or 0, numbers["sigma_ddec"] or 0)
    half = min(float(numbers["match_radius"] or 1.0), max(6 * spread, 0.05))
    edges = np.linspace(-half, half, 49)
    counts, _, _ = np.histogram2d(dra, ddec, bins=[edges, edges])
    mesh = main.pcolormesh(edges, edges, np.ma.masked_equal(counts.T, 0), cmap="viridis",
                           norm=LogNorm(vmin=1, vmax=max(counts.max(), 2)))
    for ax in (main, axd["top"]):
        ax.axvline(0, color="0.5", lw=0.8)
    for ax in (main, axd["right"]):
        ax.axhline(0, color="0.5", lw=0.8)
    main.set_xlim(-half, half)
    main.set_ylim(-half, half)
    main.set_xlabel("Δra·cos(dec)  [arcsec]", fontsize=12)
    main.set_ylabel("Δdec  [arcsec]", fontsize=12)
    axd["top"].stairs(np.histogram(dra, edges)[0], edges, fill=True, color="#2c7fb8", label="Δra·cos(dec)")
    axd["top"].set_xlim(-half, half)
    axd["top"].tick_params(labelbottom=False)
    axd["top"].set_ylabel("N")
    axd["top"].legend(fontsize=9, loc="upper left")
    axd["right"].stairs(np.histogram(ddec, edges)[0], edges, fill=True, orientation="horizontal",
                        color="#de2d26", label="Δdec")
    axd["right"].set_ylim(-half, half)
    axd["right"].tick_params(labelleft=False)
    axd["right"].set_xlabel("N")
    axd["right"].legend(fontsize=9, loc="upper right")
    outside = int(np.sum((np.abs(dra) > half) | (np.abs(ddec) > half)))
    sampled = "" if numbers["sample_complete"] else f"\n(sample {numbers['n_sample']})"
    axd["text"].text(0.0, 1.0, f"N = {numbers['n']}{sampled}\n\nΔra·cos(dec):\n median {numbers['median_dra']:+.3f}″\n"
                     f" σ_rob  {numbers['sigma_dra']:.3f}″\nΔdec:\n median {numbers['median_ddec']:+.3f}″\n"
                     f" σ_rob  {numbers['sigma_ddec']:.3f}″\nbeyond axes: {outside}",
                     transform=axd["text"].transAxes, va="top", ha="left", fontsize=10.5, family="monospace")
    fig.colorbar(mesh, ax=list(axd.values()), location="right", shrink=0.6, label="sources per bin")
    _save(fig, path)


# ----------------------------------------------------------------------------- confusion

def draw_confusion(acc, numbers, path, subtitle):
    fig = _figure(12, 6)
    ax = fig.subplots()
    fig.suptitle(f"Injected morphology vs Tractor type (rows normalised)\n{subtitle}", fontsize=13)
    counts = np.asarray(numbers.get("counts", np.zeros((len(INJECTED_CLASSES), len(TYPE_COLUMNS)))), np.int64)
    rows = [i for i in range(len(INJECTED_CLASSES)) if counts[i].sum() > 0 or i < 3]
    columns = [j for j, name in enumerate(TYPE_COLUMNS) if name != "other" or counts[:, j].sum() > 0]
    if acc.missing or counts.sum() == 0:
        _no_data(ax, acc.missing or "no injected sources")
        _save(fig, path)
        return
    table = counts[np.ix_(rows, columns)]
    totals = table.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        fractions = np.where(totals[:, None] > 0, table / totals[:, None], np.nan)
    image = ax.imshow(np.ma.masked_invalid(fractions), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(columns)):
            if totals[i] == 0:
                continue
            value = fractions[i, j]
            ax.text(j, i, f"{value:.2f}\n({table[i, j]})", ha="center", va="center", fontsize=11,
                    color="white" if value > 0.55 else "black")
    ax.axvline(len(columns) - 1.5, color="black", lw=1.5)
    labels = {"PSF-like": "PSF-like\n(point)", "EXP-like": "EXP-like\n(n≈1)", "DEV-like": "DEV-like\n(n≈4)",
              "unknown": "unknown"}
    ax.set_yticks(range(len(rows)), [f"{labels[INJECTED_CLASSES[i]]}\nN={totals[k]}" for k, i in enumerate(rows)],
                  fontsize=11)
    ax.set_xticks(range(len(columns)), [TYPE_COLUMNS[j] for j in columns], fontsize=11)
    ax.set_xlabel("Tractor type of the matched source (last column: not recovered)", fontsize=12)
    ax.set_ylabel("injected morphology (simcat n, rhalf)", fontsize=12)
    fig.colorbar(image, ax=ax, label="fraction of the injected class")
    _save(fig, path)


# ------------------------------------------------------------------------------- targets

def draw_targets(acc, numbers, path, subtitle):
    fig = _figure(17, 7)
    axes = fig.subplots(1, 3)
    fig.suptitle(f"Target selection on measured vs true fluxes\n{subtitle}", fontsize=13)
    selections = numbers.get("selections", {})
    centres = 0.5 * (MAG_BINS[1:] + MAG_BINS[:-1])
    for ax, (sel, label, band) in zip(axes, (("desi_elg", "DESI ELG", "r"), ("eboss_ngc", "eBOSS ELG NGC", "g"),
                                             ("eboss_sgc", "eBOSS ELG SGC", "g"))):
        ax.set_title(label, fontsize=12)
        d = selections.get(sel)
        limits = None if d is None else _mag_limits([d["hist_true"], d["hist_measured"]])
        if acc.missing or d is None or limits is None:
            _no_data(ax, acc.missing or f"no source selected as {label} (true or measured)")
            continue
        for key, denominator, name, marker, colour, total in (
                ("completeness", "hist_true", "completeness", "o", "#2c7fb8",
                 f"{_fmt(d['completeness'])} ({d['n_true_and_measured']}/{d['n_true']})"),
                ("contamination", "hist_measured", "contamination", "s", "#e6550d",
                 f"{_fmt(d['contamination'])} ({d['n_measured_not_true']}/{d['n_measured']})")):
            value, low, high = (_array(d[f"{key}_{part}"]) for part in ("bins", "low", "high"))
            counts = np.asarray(d[denominator])
            face = colour if marker == "o" else "white"
            solid = np.isfinite(value) & (counts >= SPARSE_BIN)
            sparse = np.isfinite(value) & (counts < SPARSE_BIN)
            shown = np.where(solid, value, np.nan)  # NaN breaks the line across sparse or empty bins
            ax.errorbar(centres, shown, yerr=_yerr(np.nan_to_num(shown), np.nan_to_num(low), np.nan_to_num(high)),
                        fmt=marker + "-", ms=5, capsize=2, color=colour, mfc=face, label=f"{name}: {total}")
            if sparse.any():
                ax.errorbar(centres[sparse], value[sparse], yerr=_yerr(value[sparse], low[sparse], high[sparse]),
                            fmt=marker, ms=5, capsize=2, color=colour, mfc=face, alpha=0.3)
        twin = ax.twinx()
        twin.stairs(d["hist_true"], MAG_BINS, color="0.6", lw=1.2, label="true-selected")
        twin.stairs(d["hist_measured"], MAG_BINS, color="0.6", lw=1.2, ls=":", label="measured-selected")
        twin.set_ylabel("sources per 0.2 mag (grey)", fontsize=10, color="0.4")
        twin.tick_params(colors="0.4")
        ax.set_zorder(twin.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.set_xlim(*limits)
        ax.set_ylim(-0.03, 1.05)
        ax.set_xlabel(f"true de-extincted {band} [AB mag]", fontsize=12)
        ax.set_ylabel("fraction", fontsize=12)
        ax.grid(alpha=0.3)
        handles = ax.get_legend_handles_labels()
        twin_handles = twin.get_legend_handles_labels()
        ax.legend(handles[0] + twin_handles[0], handles[1] + twin_handles[1], loc="upper center",
                  bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=10,
                  title=f"faint points: bins with < {SPARSE_BIN} sources",
                  title_fontsize=9)
    _save(fig, path)


# -------------------------------------------------------------------------------- skymap

def _wrap_ra(ra):
    """RA in [0, 360) or in [-180, 180), whichever spans less (bricks across RA 0 stay together)."""
    wrapped = (ra + 180.0) % 360.0 - 180.0
    if len(ra) and np.ptp(wrapped) < np.ptp(ra):
        return wrapped
    return ra


def draw_skymap(acc, numbers, path, subtitle):
    fig = _figure(15, 6.5)
    axes = fig.subplots(1, 2)
    fig.suptitle(f"Per-brick summary on the sky (brick centres)\n{subtitle}", fontsize=13)
    table = acc.table
    n = len(table.get("ra", ()))
    panels = (("frac_recovered", "recovered fraction", "fraction recovered (n_rec / n_inj)", "viridis"),
              ("galdepth_g", "galaxy depth g (galdepth_g)", "5σ galaxy depth g [AB mag]", "magma"))
    if acc.missing or n == 0:
        for ax, (_, title, _, _) in zip(axes, panels):
            ax.set_title(title, fontsize=12)
            _no_data(ax, acc.missing or "no bricks")
        _save(fig, path)
        return
    ra, dec = _wrap_ra(table["ra"]), table["dec"]
    height = 0.25
    if "brick_area" in table and np.all(np.isfinite(table["brick_area"])):
        band = (np.sin(np.radians(dec + height / 2)) - np.sin(np.radians(dec - height / 2))) * np.degrees(1.0)
        width = table["brick_area"] / band
    else:
        width = height / np.cos(np.radians(dec))
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    for ax, (name, title, label, cmap) in zip(axes, panels):
        values = table[name]
        finite = values[np.isfinite(values)]
        vmin, vmax = (finite.min(), finite.max()) if len(finite) else (0, 1)
        if vmin == vmax:
            vmin, vmax = vmin - 0.01, vmax + 0.01
        if n <= 20000:
            patches = [Rectangle((r - w / 2, d - height / 2), w, height) for r, d, w in zip(ra, dec, width)]
            artist = PatchCollection(patches, cmap=cmap, edgecolor="0.3", linewidth=0.3)
            artist.set_array(np.ma.masked_invalid(values))
            artist.set_clim(vmin, vmax)
            ax.add_collection(artist)
        else:
            artist = ax.scatter(ra, dec, c=values, s=2, marker="s", cmap=cmap, vmin=vmin, vmax=vmax)
        pad = 0.3
        ax.set_xlim(ra.max() + np.max(width) / 2 + pad, ra.min() - np.max(width) / 2 - pad)  # east to the left
        ax.set_ylim(dec.min() - height / 2 - pad, dec.max() + height / 2 + pad)
        ax.set_aspect(1.0 / max(np.cos(np.radians(np.mean(dec))), 0.05))
        ax.set_title(f"{title}: median {_fmt(numbers[name]['median'])}", fontsize=12)
        ax.set_xlabel("RA [deg]", fontsize=12)
        ax.set_ylabel("Dec [deg]", fontsize=12)
        ax.grid(alpha=0.3)
        fig.colorbar(artist, ax=ax, label=label, shrink=0.85)
    _save(fig, path)


DRAWERS = {"recovery": draw_recovery, "flux_residuals": draw_flux_residuals, "astrometry": draw_astrometry,
           "confusion": draw_confusion, "targets": draw_targets, "skymap": draw_skymap}
