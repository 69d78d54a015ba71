"""Drawing of the thesis figure families (`plot.families`): input distributions and
recovery vs injected properties, per-type counts and shape recovery, colour space."""

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.lines import Line2D

from .accumulate import SELECTIONS
from .draw import BAND_COLOURS, _array, _figure, _mag_limits, _no_data, _save, _yerr
from .draw_thesis import SELECTION_COLOURS
from .stats import MAG_BINS

__all__ = ["FAMILY_DRAWERS"]

PROPERTY_LABELS = {"rhalf": "injected half-light radius [arcsec]", "n": "injected Sérsic index n",
                   "e1": "injected e1", "e2": "injected e2", "redshift": "redshift (truth table)"}


MIN_FRACTION_BIN = 5  # fewer injected sources give an error bar spanning most of [0, 1]: not drawn


def _fraction(ax, bins, d, colour="black", label=None):
    centres = 0.5 * (np.asarray(bins[1:]) + np.asarray(bins[:-1]))
    n = np.asarray(d["n"])
    show = n >= MIN_FRACTION_BIN
    value, low, high = _array(d["fraction"]), _array(d["low"]), _array(d["high"])
    ax.errorbar(centres[show], value[show], yerr=_yerr(value[show], low[show], high[show]), fmt="o-", ms=4,
                capsize=2, color=colour, label=label)
    ax.set_ylim(-0.03, 1.05)
    ax.set_ylabel(f"recovered fraction (bins ≥ {MIN_FRACTION_BIN} sources)", fontsize=10)
    ax.grid(alpha=0.3)


def draw_inputs(acc, numbers, path, subtitle):
    fig = _figure(20, 14)
    axes = fig.subplots(3, 4)
    fig.suptitle(f"Injected sources: distributions (all and recovered) and recovered fraction vs injected "
                 f"properties\n{subtitle}", fontsize=14)
    bands, props, colours = numbers.get("bands", {}), numbers.get("properties", {}), numbers.get("colours", {})
    limits = _mag_limits([bands[b]["n"] for b in bands] + [bands[b]["n_added"] for b in bands])
    for ax, b in zip(axes[0, :3], "grz"):
        ax.set_title(f"{b} magnitude", fontsize=12)
        d = bands.get(b)
        if acc.missing or d is None or limits is None:
            _no_data(ax, acc.missing or f"no simcat {b} flux")
            continue
        colour = BAND_COLOURS[b]
        ax.stairs(d["n"], MAG_BINS, color=colour, lw=2, label=f"true, de-extincted ({sum(d['n'])})")
        ax.stairs(d["n_added"], MAG_BINS, color=colour, lw=1.2, ls="--", label="as added (with extinction)")
        ax.stairs(d["n_recovered"], MAG_BINS, color="0.3", lw=1.5, label=f"true, recovered ({sum(d['n_recovered'])})")
        if d["n_measured"] is not None:
            ax.stairs(d["n_measured"], MAG_BINS, color="0.3", lw=1.2, ls=":",
                      label="measured, de-extincted (with noise)")
        ax.set_xlim(*limits)
        ax.set_ylim(0, 1.45 * max(max(d["n"]), max(d["n_added"]), 1))  # room for the legend
        ax.set_xlabel(f"{b} [AB mag]", fontsize=10)
        ax.set_ylabel("sources per 0.2 mag", fontsize=10)
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(alpha=0.3)
    ax = axes[0, 3]
    ax.set_title("true colours", fontsize=12)
    if colours:
        for c, style in (("gr", "-"), ("rz", "--")):
            d = colours[c]
            ax.stairs(d["n"], np.asarray(d["bins"]), color="black", ls=style, lw=1.5, label=f"{c[0]}−{c[1]}, all")
            ax.stairs(d["n_recovered"], np.asarray(d["bins"]), color="0.55", ls=style, lw=1.5,
                      label=f"{c[0]}−{c[1]}, recovered")
        ax.set_xlabel("colour [mag]", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    else:
        _no_data(ax, acc.missing or "needs g, r and z simcat fluxes")
    keys = ["rhalf", "n", "e1", "e2"]
    for ax, key in zip(axes[1], keys):
        ax.set_title(f"injected {key}", fontsize=12)
        d = props.get(key)
        if d is None or not sum(d["n"]):
            _no_data(ax, f"no column {key} or psql_{key}" if d is None else "no values in range")
            continue
        ax.stairs(d["n"], np.asarray(d["bins"]), color="black", lw=1.8, label=f"all ({sum(d['n'])})")
        ax.stairs(d["n_recovered"], np.asarray(d["bins"]), color="0.55", lw=1.8,
                  label=f"recovered ({sum(d['n_recovered'])})")
        ax.set_xlabel(PROPERTY_LABELS[key], fontsize=10)
        ax.set_ylabel("sources per bin", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    for ax, key in zip(axes[2], ["rhalf", "redshift", "n", "e1"]):
        ax.set_title(f"recovered fraction vs {key}", fontsize=12)
        d = props.get(key)
        if d is None or not sum(d["n"]):
            _no_data(ax, f"no column {key} or psql_{key}" if d is None else "no values in range")
            continue
        _fraction(ax, d["bins"], d)
        ax.set_xlabel(PROPERTY_LABELS[key], fontsize=10)
    _save(fig, path)


def draw_morphology(acc, numbers, path, subtitle):
    fig = _figure(18, 11)
    axes = fig.subplots(2, 3)
    fig.suptitle(f"Morphology: counts per type (input, recovered, measured) and shape recovery\n{subtitle}",
                 fontsize=14)
    if acc.missing:
        for ax in axes.ravel():
            _no_data(ax, acc.missing)
        _save(fig, path)
        return
    ax = axes[0, 0]
    classes = numbers["classes"]
    x = np.arange(len(classes))
    ax.bar(x - 0.2, numbers["n_input"], 0.4, color="0.3", label="injected")
    ax.bar(x + 0.2, numbers["n_recovered"], 0.4, color="#74a9cf", label="recovered")
    for xi, n, k in zip(x, numbers["n_input"], numbers["n_recovered"]):
        if n:
            ax.annotate(f"{k / n:.2f}", (xi + 0.2, k), ha="center", va="bottom", fontsize=9)
    ax.set_xticks(x, classes)
    ax.set_ylabel("sources", fontsize=10)
    ax.set_title("injected morphology: input and recovered (fraction)", fontsize=12)
    ax.legend(fontsize=9)
    ax = axes[0, 1]
    types = numbers["types"]
    ax.bar(np.arange(len(types)), numbers["n_measured_type"], color="#fd8d3c")
    for xi, n, f in zip(range(len(types)), numbers["n_measured_type"], numbers["measured_type_fraction"]):
        ax.annotate(f"{n}\n({f:.2f})", (xi, n), ha="center", va="bottom", fontsize=9)
    ax.set_xticks(np.arange(len(types)), types)
    ax.set_ylim(0, 1.15 * max(max(numbers["n_measured_type"]), 1))
    ax.set_ylabel("recovered sources", fontsize=10)
    ax.set_title("Tractor type of recovered sources (measured)", fontsize=12)
    ax = axes[0, 2]
    ax.set_title("injected rhalf of recovered sources, by Tractor type", fontsize=12)
    by_type = numbers.get("rhalf_by_type", {})
    bins = np.asarray(numbers["versus"]["rhalf"]["bins"]) if "rhalf" in numbers["versus"] else None
    if bins is not None and any(sum(hist) for hist in by_type.values()):
        for kind, hist in by_type.items():
            if sum(hist):
                ax.stairs(np.asarray(hist) / sum(hist) / np.diff(bins), bins, lw=1.5, label=f"{kind} ({sum(hist)})")
        ax.set_xlabel("injected half-light radius [arcsec]", fontsize=10)
        ax.set_ylabel("density", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    else:
        _no_data(ax, "no injected rhalf, no Tractor shapes, or nothing recovered")
    for ax, key in zip(axes[1], ["rhalf", "e1", "e2"]):
        fits = "not PSF/SIMP/COMP" if key == "rhalf" else "not PSF/SIMP/REX/COMP"
        ax.set_title(f"measured vs injected {key} (recovered, {fits})", fontsize=12)
        d = numbers["versus"].get(key)
        if d is None or not d["n"]:
            _no_data(ax, f"no injected {key} or Tractor shape columns" if d is None else "no recovered galaxy fits")
            continue
        bins = np.asarray(d["bins"])
        counts = np.asarray(d["counts"], np.float64)
        image = ax.pcolormesh(bins, bins, np.ma.masked_equal(counts.T, 0), cmap="Greys",
                              norm=LogNorm(vmin=1, vmax=max(counts.max(), 2)))
        ax.plot(bins, bins, color="#d7301f", ls="--", lw=1, label="measured = injected")
        ax.plot(0.5 * (bins[1:] + bins[:-1]), _array(d["mean_measured"]), color="#2c7fb8", lw=2,
                label="mean measured per bin")
        unit = " [arcsec]" if key == "rhalf" else ""
        ax.set_xlabel(f"injected {key}{unit}", fontsize=10)
        ax.set_ylabel(f"Tractor {key}{unit} (shapedev for DEV, shapeexp otherwise)", fontsize=9)
        ax.legend(fontsize=8, loc="upper left")
        fig.colorbar(image, ax=ax, label="sources", shrink=0.8)
    _save(fig, path)


MIN_COLOUR_CELL = 5  # cells with fewer injected sources get no recovered fraction


def _colour_limits(numbers):
    """Axis limits around the cells holding any injected source, padded by 0.15 mag."""
    counts = np.asarray(numbers["maps"]["recovered"]) + np.asarray(numbers["maps"]["lost"])
    gr, rz = np.asarray(numbers["gr_bins"]), np.asarray(numbers["rz_bins"])
    if not counts.sum():
        return (rz[0], rz[-1]), (gr[0], gr[-1])
    rows, cols = np.flatnonzero(counts.sum(axis=1)), np.flatnonzero(counts.sum(axis=0))
    return ((max(rz[cols[0]] - 0.15, rz[0]), min(rz[cols[-1] + 1] + 0.15, rz[-1])),
            (max(gr[rows[0]] - 0.15, gr[0]), min(gr[rows[-1] + 1] + 0.15, gr[-1])))


def _colour_map(ax, numbers, key, cmap, title):
    gr, rz = np.asarray(numbers["gr_bins"]), np.asarray(numbers["rz_bins"])
    counts = np.asarray(numbers["maps"][key], np.float64)
    ax.set_title(f"{title} ({numbers['totals'][key]})", fontsize=12)
    if not counts.sum():
        _no_data(ax, "none")
        return
    image = ax.pcolormesh(rz, gr, np.ma.masked_equal(counts, 0), cmap=cmap,
                          norm=LogNorm(vmin=1, vmax=max(counts.max(), 2)))
    ax.figure.colorbar(image, ax=ax, label="sources", shrink=0.8)
    _colour_axes(ax, numbers)


def _colour_axes(ax, numbers):
    xlim, ylim = _colour_limits(numbers)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("r − z [mag]", fontsize=10)
    ax.set_ylabel("g − r [mag]", fontsize=10)
    ax.grid(alpha=0.3)


TYPE_COLOURS = {"PSF": "#1b9e77", "SIMP": "#a6761d", "REX": "#d95f02", "EXP": "#7570b3", "DEV": "#e7298a",
                "COMP": "#666666"}


def enclosing_level(counts, fraction=0.68):
    """The cell count above which the cells hold `fraction` of all the counts."""
    values = np.sort(np.asarray(counts, np.float64).ravel())[::-1]
    if not values.sum():
        return None
    cumulative = np.cumsum(values) / values.sum()
    return float(values[min(np.searchsorted(cumulative, fraction), len(values) - 1)])


def _by_type(ax, numbers):
    ax.set_title("recovered by Tractor type (68% contours)", fontsize=12)
    # cells of 2 x 2 histogram bins: smoother contours
    gr_edges, rz_edges = np.asarray(numbers["gr_bins"])[::2], np.asarray(numbers["rz_bins"])[::2]
    gr, rz = 0.5 * (gr_edges[1:] + gr_edges[:-1]), 0.5 * (rz_edges[1:] + rz_edges[:-1])
    handles = []
    for kind, colour in TYPE_COLOURS.items():
        counts = np.asarray(numbers["maps"].get(f"type_{kind}", [[0]]), np.float64)
        if counts.shape != (2 * len(gr), 2 * len(rz)):
            continue
        counts = counts.reshape(len(gr), 2, len(rz), 2).sum(axis=(1, 3))
        level = enclosing_level(counts)
        if level is None or counts.sum() < 20 or counts.max() <= level:
            continue
        ax.contour(rz, gr, counts, levels=[level], colors=[colour], linewidths=1.6)
        handles.append(Line2D([], [], color=colour, label=f"{kind} ({int(counts.sum())})"))
    if not handles:
        _no_data(ax, "no type with ≥ 20 recovered sources")
        return
    ax.legend(handles=handles, fontsize=9, loc="upper left")
    _colour_axes(ax, numbers)


def draw_colours(acc, numbers, path, subtitle):
    fig = _figure(21, 10)
    axes = fig.subplots(2, 4)
    fig.suptitle(f"Colour space g−r vs r−z: recovered, lost and contaminating sources\n{subtitle}", fontsize=14)
    if acc.missing:
        for ax in axes.ravel():
            _no_data(ax, acc.missing)
        _save(fig, path)
        return
    _colour_map(axes[0, 0], numbers, "recovered", "Blues", "recovered (true colours)")
    _colour_map(axes[0, 1], numbers, "lost", "Reds", "lost (true colours)")
    ax = axes[0, 2]
    fraction = np.asarray([[np.nan if v is None else v for v in row] for row in numbers["fraction_recovered"]])
    injected = np.asarray(numbers["maps"]["recovered"]) + np.asarray(numbers["maps"]["lost"])
    fraction[injected < MIN_COLOUR_CELL] = np.nan
    ax.set_title(f"recovered fraction (cells with ≥ {MIN_COLOUR_CELL} injected)", fontsize=12)
    image = ax.pcolormesh(np.asarray(numbers["rz_bins"]), np.asarray(numbers["gr_bins"]),
                          np.ma.masked_invalid(fraction), cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="recovered / injected", shrink=0.8)
    _colour_axes(ax, numbers)
    if numbers.get("has_types"):
        _by_type(axes[0, 3], numbers)
    else:
        _no_data(axes[0, 3], "no tractor_type")
    axes[1, 3].set_visible(False)
    for ax, (sel, label, _) in zip(axes[1, :3], SELECTIONS):
        if not numbers["has_targets"]:
            _no_data(ax, "no targets_mask")
            continue
        _colour_map(ax, numbers, f"contaminating_{sel}", "Oranges",
                    f"{label}: contaminating\n(measured colours; contour: true-selected)")
        true = np.asarray(numbers["maps"][f"true_{sel}"], np.float64)
        if true.sum():
            ax.contour(0.5 * (np.asarray(numbers["rz_bins"][1:]) + np.asarray(numbers["rz_bins"][:-1])),
                       0.5 * (np.asarray(numbers["gr_bins"][1:]) + np.asarray(numbers["gr_bins"][:-1])),
                       true, levels=[0.5], colors=[SELECTION_COLOURS[sel]], linewidths=1.2)
    _save(fig, path)


FAMILY_DRAWERS = {"inputs": draw_inputs, "morphology": draw_morphology, "colours": draw_colours}
