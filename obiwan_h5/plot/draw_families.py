"""Drawing of the thesis figure families (`plot.families`): input distributions and
recovery vs injected properties, per-type counts and shape recovery, colour space.

Same conventions as `draw`: fixed layouts, only the panels that have data (a view without
shape columns gets no shape panels, not "no data" boxes).
"""

import numpy as np
from matplotlib.colors import LogNorm

from .accumulate import SELECTION_AXES
from .draw import BAND_COLOURS, colorbar, decorate, grid, mag_limits, new_figure, save, values, yerr
from .draw_thesis import SELECTION_COLOURS
from .stats import MAG_BINS

__all__ = ["draw_colours", "draw_inputs", "draw_morphology"]

PROPERTY_LABELS = {"rhalf": "injected half-light radius [arcsec]", "n": "injected Sérsic index n",
                   "e1": "injected e1", "e2": "injected e2", "redshift": "redshift (truth table)"}
MIN_FRACTION_BIN = 5  # fewer injected sources give an error bar spanning most of [0, 1]: not drawn
MIN_TYPE_BIN = 20  # colour bins (0.1 mag) with fewer recovered sources get no type mix
MIN_COLOUR_CELL = 5  # cells with fewer injected sources get no recovered fraction
TYPE_COLOURS = {"PSF": "#1b9e77", "SIMP": "#a6761d", "REX": "#d95f02", "EXP": "#7570b3", "DEV": "#e7298a",
                "COMP": "#666666"}


def _panels(fig, rows, **margins):
    """Lay out rows of panel-drawing functions on a grid; unused cells are left blank."""
    ncols = max(len(row) for row in rows)
    axes = grid(fig, len(rows), ncols, **margins)
    for r, row in enumerate(rows):
        for c in range(ncols):
            if c < len(row):
                row[c](axes[r, c])
            else:
                axes[r, c].set_visible(False)
    return axes


# ------------------------------------------------------------------------------- inputs

def _fraction(ax, bins, d, label):
    centres = 0.5 * (np.asarray(bins[1:]) + np.asarray(bins[:-1]))
    show = np.asarray(d["n"]) >= MIN_FRACTION_BIN
    value, low, high = values(d["fraction"]), values(d["low"]), values(d["high"])
    ax.errorbar(centres[show], value[show], yerr=yerr(value[show], low[show], high[show]), fmt="o-", ms=4,
                capsize=2, color="black")
    _fraction_axes(ax, label)


def _fraction_axes(ax, label):
    ax.set_ylim(-0.03, 1.05)
    ax.set_ylabel(f"recovered fraction (≥ {MIN_FRACTION_BIN} sources)", fontsize=9.5)
    ax.set_xlabel(label, fontsize=10)
    ax.grid(alpha=0.3)


def _discrete_fraction(ax, d, label):
    """Recovered fraction at each value of a discrete property: points, no line between them."""
    # one evenly spaced position per value, as in the bar chart of the distribution
    x, show = np.arange(len(d["values"])), np.asarray(d["n"]) >= MIN_FRACTION_BIN
    value, low, high = values(d["fraction"]), values(d["low"]), values(d["high"])
    ax.errorbar(x[show], value[show], yerr=yerr(value[show], low[show], high[show]), fmt="o", ms=7, capsize=4,
                color="black")
    for xi, v, n in zip(x[show], value[show], np.asarray(d["n"])[show]):
        ax.annotate(f"{v:.2f}\nN={n}", (xi, v), textcoords="offset points", xytext=(0, -34), ha="center",
                    fontsize=8.5)
    ax.set_xticks(x, [f"{v:g}" for v in d["values"]])
    ax.set_xlim(-0.6, len(x) - 0.4)
    _fraction_axes(ax, label)


def _distribution(ax, key, d):
    discrete = d["discrete"]
    if discrete:
        x = np.arange(len(discrete["values"]))
        ax.bar(x - 0.2, discrete["n"], 0.4, color="0.25", label=f"all ({sum(discrete['n'])})")
        ax.bar(x + 0.2, discrete["n_recovered"], 0.4, color="0.65",
               label=f"recovered ({sum(discrete['n_recovered'])})")
        ax.set_xticks(x, [f"{v:g}" for v in discrete["values"]])
    else:
        ax.stairs(d["n"], np.asarray(d["bins"]), color="black", lw=1.8, label=f"all ({sum(d['n'])})")
        ax.stairs(d["n_recovered"], np.asarray(d["bins"]), color="0.55", lw=1.8,
                  label=f"recovered ({sum(d['n_recovered'])})")
    ax.set_ylim(0, 1.3 * ax.get_ylim()[1])  # room for the legend
    decorate(ax, f"injected {key}", PROPERTY_LABELS[key], "sources" + ("" if discrete else " per bin"))


def _magnitudes(ax, b, d, limits):
    colour = BAND_COLOURS[b]
    ax.stairs(d["n"], MAG_BINS, color=colour, lw=2, label=f"true, de-extincted ({sum(d['n'])})")
    if d["n_added"] is not None:
        ax.stairs(d["n_added"], MAG_BINS, color=colour, lw=1.2, ls="--", label="as added (with extinction)")
    ax.stairs(d["n_recovered"], MAG_BINS, color="0.3", lw=1.5, label=f"true, recovered ({sum(d['n_recovered'])})")
    if d["n_measured"] is not None:
        ax.stairs(d["n_measured"], MAG_BINS, color="0.3", lw=1.2, ls=":", label="measured, de-extincted")
    ax.set_xlim(*limits)
    ax.set_ylim(0, 1.5 * max(max(d["n"]), max(d["n_added"] or [0]), 1))  # room for the legend
    decorate(ax, f"{b} magnitude", f"{b} [AB mag]", "sources per 0.2 mag", legend=8, loc="upper left")


def _colours_1d(ax, colours):
    for c, style in (("gr", "-"), ("rz", "--")):
        d = colours[c]
        ax.stairs(d["n"], np.asarray(d["bins"]), color="black", ls=style, lw=1.5, label=f"{c[0]}−{c[1]}, all")
        ax.stairs(d["n_recovered"], np.asarray(d["bins"]), color="0.55", ls=style, lw=1.5,
                  label=f"{c[0]}−{c[1]}, recovered")
    decorate(ax, "true colours", "colour [mag]", "sources per 0.05 mag", legend=8)


def draw_inputs(acc, numbers, path, subtitle):
    """Magnitude, colour and injected-property histograms (all and recovered), and the
    recovered fraction against each property."""
    bands = {b: d for b, d in numbers["bands"].items() if sum(d["n"])}
    props = {key: d for key, d in numbers["properties"].items() if sum(d["n"])}
    limits = mag_limits([d["n"] for d in bands.values()] + [d["n_added"] for d in bands.values() if d["n_added"]])
    first = [lambda ax, b=b: _magnitudes(ax, b, bands[b], limits) for b in bands]
    if numbers["colours"]:
        first.append(lambda ax: _colours_1d(ax, numbers["colours"]))
    second = [lambda ax, key=key: _distribution(ax, key, props[key]) for key in ("rhalf", "n", "e1", "e2")
              if key in props]
    third = []
    for key in ("rhalf", "redshift", "n", "e1"):
        if key in props:
            d, label = props[key], PROPERTY_LABELS[key]
            draw = (lambda ax, d=d, label=label: _discrete_fraction(ax, d["discrete"], label)) if d["discrete"] \
                else (lambda ax, d=d, label=label: _fraction(ax, d["bins"], d, label))
            third.append(lambda ax, key=key, draw=draw: (draw(ax), ax.set_title(f"recovered fraction vs {key}",
                                                                                   fontsize=12)))
    rows = [row for row in (first, second, third) if row]
    fig = new_figure(13, 3.55 * len(rows) + 1.0, "Injected sources: distributions (all and recovered) and "
                     "recovered fraction vs injected properties", subtitle)
    _panels(fig, rows, left=0.75, right=0.2, top=1.0, bottom=0.6, wspace=0.7, hspace=0.85)
    save(fig, path)


# --------------------------------------------------------------------------- morphology

def _class_counts(ax, numbers):
    shown = [numbers["classes"].index(name) for name in numbers["classes_shown"]]
    x = np.arange(len(shown))
    n = [numbers["n_input"][i] for i in shown]
    k = [numbers["n_recovered"][i] for i in shown]
    ax.bar(x - 0.2, n, 0.4, color="0.3", label="injected")
    ax.bar(x + 0.2, k, 0.4, color="#74a9cf", label="recovered")
    for xi, total, found in zip(x, n, k):
        ax.annotate(f"{found / total:.2f}", (xi + 0.2, found), ha="center", va="bottom", fontsize=9)
    ax.set_xticks(x, numbers["classes_shown"])
    ax.set_ylabel("sources", fontsize=10)
    ax.set_title("injected morphology: input, recovered (fraction)", fontsize=11.5)
    ax.legend(fontsize=9)


def _type_counts(ax, numbers):
    counts = dict(zip(numbers["types"], numbers["n_measured_type"]))
    fractions = dict(zip(numbers["types"], numbers["measured_type_fraction"]))
    types = numbers["types_shown"]
    x = np.arange(len(types))
    ax.bar(x, [counts[t] for t in types], color=[TYPE_COLOURS.get(t, "0.5") for t in types])
    for xi, t in zip(x, types):
        ax.annotate(f"{counts[t]}\n({fractions[t]:.2f})", (xi, counts[t]), ha="center", va="bottom", fontsize=9)
    ax.set_xticks(x, types)
    ax.set_ylim(0, 1.2 * max(max(counts.values()), 1))
    ax.set_ylabel("recovered sources", fontsize=10)
    ax.set_title("Tractor type of recovered sources", fontsize=11.5)


def _rhalf_by_type(ax, numbers):
    bins = np.asarray(numbers["versus"]["rhalf"]["bins"])
    for kind, hist in numbers["rhalf_by_type"].items():
        if sum(hist):
            ax.stairs(np.asarray(hist) / sum(hist) / np.diff(bins), bins, lw=1.5, color=TYPE_COLOURS.get(kind),
                      label=f"{kind} ({sum(hist)})")
    ax.set_xlim(0, bins[np.flatnonzero(np.sum(list(numbers["rhalf_by_type"].values()), axis=0))[-1] + 1] + 0.1)
    decorate(ax, "injected rhalf of recovered, by fitted type", "injected half-light radius [arcsec]", "density")


def _versus(fig, ax, key, d):
    bins = np.asarray(d["bins"])
    counts = np.asarray(d["counts"], np.float64)
    image = ax.pcolormesh(bins, bins, np.ma.masked_equal(counts.T, 0), cmap="Greys",
                          norm=LogNorm(vmin=1, vmax=max(counts.max(), 2)))
    ax.plot(bins, bins, color="#d7301f", ls="--", lw=1, label="measured = injected")
    ax.plot(0.5 * (bins[1:] + bins[:-1]), values(d["mean_measured"]), color="#2c7fb8", lw=2,
            label="mean measured per bin")
    used = np.flatnonzero(counts.sum(axis=1) + counts.sum(axis=0))
    ax.set_xlim(bins[used[0]], bins[used[-1] + 1])
    ax.set_ylim(bins[used[0]], bins[used[-1] + 1])
    unit = " [arcsec]" if key == "rhalf" else ""
    fits = "PSF, SIMP, COMP" if key == "rhalf" else "PSF, SIMP, REX, COMP"
    ax.set_title(f"{key}: measured vs injected", fontsize=11.5)
    ax.set_xlabel(f"injected {key}{unit}", fontsize=10)
    ax.set_ylabel(f"Tractor {key}{unit} (no {fits} fits)", fontsize=9.5)
    ax.legend(fontsize=8.5, loc="upper left")
    colorbar(fig, image, ax, "N", above=True)


def draw_morphology(acc, numbers, path, subtitle):
    """Counts per injected class and Tractor type, the recovered fraction per class, and
    measured against injected shapes."""
    first = [lambda ax: _class_counts(ax, numbers)]
    if numbers["types_shown"] and sum(numbers["n_measured_type"]):
        first.append(lambda ax: _type_counts(ax, numbers))
    if any(sum(hist) for hist in numbers.get("rhalf_by_type", {}).values()):
        first.append(lambda ax: _rhalf_by_type(ax, numbers))
    second = [lambda ax, key=key: _versus(ax.figure, ax, key, numbers["versus"][key]) for key in ("rhalf", "e1", "e2")
              if numbers["versus"].get(key, {}).get("n")]
    rows = [row for row in (first, second) if row]
    fig = new_figure(13, 4.1 * len(rows) + 1.0, "Morphology: counts per type (input, recovered, measured) and "
                     "shape recovery", subtitle)
    _panels(fig, rows, left=0.8, right=0.5, top=1.0, bottom=0.6, wspace=0.95, hspace=0.8)
    save(fig, path)


# ------------------------------------------------------------------------------ colours

def _colour_limits(numbers):
    """Axis limits around the cells holding any injected source, padded by 0.15 mag."""
    counts = np.asarray(numbers["maps"]["recovered"]) + np.asarray(numbers["maps"]["lost"])
    gr, rz = np.asarray(numbers["gr_bins"]), np.asarray(numbers["rz_bins"])
    rows, cols = np.flatnonzero(counts.sum(axis=1)), np.flatnonzero(counts.sum(axis=0))
    return ((max(rz[cols[0]] - 0.15, rz[0]), min(rz[cols[-1] + 1] + 0.15, rz[-1])),
            (max(gr[rows[0]] - 0.15, gr[0]), min(gr[rows[-1] + 1] + 0.15, gr[-1])))


def _colour_axes(ax, numbers):
    xlim, ylim = _colour_limits(numbers)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("r − z [mag]", fontsize=10)
    ax.set_ylabel("g − r [mag]", fontsize=10)
    ax.grid(alpha=0.3)


def _colour_map(ax, numbers, key, cmap, title):
    counts = np.asarray(numbers["maps"][key], np.float64)
    ax.set_title(f"{title} ({numbers['totals'][key]})", fontsize=11)
    image = ax.pcolormesh(np.asarray(numbers["rz_bins"]), np.asarray(numbers["gr_bins"]),
                          np.ma.masked_equal(counts, 0), cmap=cmap, norm=LogNorm(vmin=1, vmax=max(counts.max(), 2)))
    colorbar(ax.figure, image, ax, "N", above=True)
    _colour_axes(ax, numbers)


def _fraction_map(ax, numbers):
    fraction = np.asarray([[np.nan if v is None else v for v in row] for row in numbers["fraction_recovered"]])
    injected = np.asarray(numbers["maps"]["recovered"]) + np.asarray(numbers["maps"]["lost"])
    fraction[injected < MIN_COLOUR_CELL] = np.nan
    ax.set_title(f"recovered fraction (≥ {MIN_COLOUR_CELL} injected)", fontsize=11)
    image = ax.pcolormesh(np.asarray(numbers["rz_bins"]), np.asarray(numbers["gr_bins"]),
                          np.ma.masked_invalid(fraction), cmap="viridis", vmin=0, vmax=1)
    colorbar(ax.figure, image, ax, "rec/inj", above=True)
    _colour_axes(ax, numbers)


def _type_mix(ax, numbers, axis):
    """The share of each Tractor type among recovered sources along one colour."""
    counts, edges, enough = _type_bins(numbers, axis)
    total = sum(counts.values())
    top = 0.0
    for kind, hist in counts.items():
        share = np.where(enough, hist / np.maximum(total, 1), np.nan)
        ax.stairs(share, edges, color=TYPE_COLOURS.get(kind, "0.5"), lw=1.8, label=f"{kind} ({int(hist.sum())})")
        top = max(top, np.nanmax(share))
    used = np.flatnonzero(enough)
    ax.set_xlim(edges[used[0]] - 0.05, edges[used[-1] + 1] + 0.05)
    ax.set_ylim(0, min(1.0, 1.6 * top))
    name = "g − r" if axis == "gr" else "r − z"
    decorate(ax, f"Tractor types vs true {name}", f"true {name} [mag] (bins ≥ {MIN_TYPE_BIN} recovered)",
             "fraction of recovered sources", legend=7.5, loc="upper center", ncol=2)


def _contaminating(ax, numbers, sel, label):
    _colour_map(ax, numbers, f"contaminating_{sel}", "Oranges", f"{label}: contaminating")
    ax.set_title(f"{ax.get_title()}\ncontour: true-selected (true colours)", fontsize=11)
    true = np.asarray(numbers["maps"][f"true_{sel}"], np.float64)
    if true.sum():
        ax.contour(0.5 * (np.asarray(numbers["rz_bins"][1:]) + np.asarray(numbers["rz_bins"][:-1])),
                   0.5 * (np.asarray(numbers["gr_bins"][1:]) + np.asarray(numbers["gr_bins"][:-1])),
                   true, levels=[0.5], colors=[SELECTION_COLOURS[sel]], linewidths=1.2)
    ax.set_xlabel("measured r − z [mag]", fontsize=10)
    ax.set_ylabel("measured g − r [mag]", fontsize=10)


def _type_bins(numbers, axis):
    """Recovered sources per Tractor type in bins of two colour cells (0.1 mag) along one
    colour, the bin edges, and which bins hold enough sources for a type mix."""
    counts = {kind: np.add.reduceat(np.asarray(hist, np.float64), np.arange(0, len(hist), 2))
              for kind, hist in numbers[f"types_vs_{axis}"].items()}
    total = sum(counts.values()) if counts else np.zeros(1)
    return counts, np.asarray(numbers[f"{axis}_bins"])[::2], total >= MIN_TYPE_BIN


def _has_type_mix(numbers):
    """True when some g−r and some r−z bin hold enough recovered sources of known type."""
    return numbers["has_types"] and all(_type_bins(numbers, axis)[2].any() for axis in ("gr", "rz"))


def draw_colours(acc, numbers, path, subtitle):
    """Maps of g−r vs r−z: recovered, lost, recovered fraction, per Tractor type, and each
    selection's contaminants over its true-selected contour."""
    first = [lambda ax: _colour_map(ax, numbers, "recovered", "Blues", "recovered (true colours)"),
             lambda ax: _colour_map(ax, numbers, "lost", "Reds", "lost (true colours)"),
             lambda ax: _fraction_map(ax, numbers)]
    types = ([lambda ax: _type_mix(ax, numbers, "gr"), lambda ax: _type_mix(ax, numbers, "rz")]
             if _has_type_mix(numbers) else [])
    second = [lambda ax, sel=sel, label=label: _contaminating(ax, numbers, sel, label) for sel, label, _ in SELECTION_AXES
              if numbers["has_targets"] and numbers["has_measured"] and numbers["totals"][f"contaminating_{sel}"]]
    if second and types:
        rows = [first + types[:1], second + types[1:]]
    else:
        rows = [row for row in (first, second, types) if row]
    fig = new_figure(13 if len(rows[0]) > 3 else 11, 4.1 * len(rows) + 1.0, "Colour space g−r vs r−z: recovered, "
                     "lost and contaminating sources", subtitle)
    _panels(fig, rows, left=0.7, right=0.6, top=1.0, bottom=0.6, wspace=1.0, hspace=1.15)
    save(fig, path)
