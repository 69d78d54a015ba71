"""`obiwan-h5 plot`: the standard analysis figures of a derived file (SPEC §8).

::

    obiwan-h5 plot derived.h5 -o figures [--bricks FILE|LIST|-] [--sample F --seed S]
                                         [--only recovery,targets] [--batch-rows N]

writes one PNG per figure, ``index.html`` (every figure with a one-line caption and the
numbers behind it) and ``numbers.json`` into the output directory. From Python::

    from obiwan_h5.plot import make_figures
    numbers = make_figures("derived.h5", "figures", only=["recovery"], sample=0.1)
    numbers["figures"]["recovery"]["bands"]["g"]["mag50"]

The rows are streamed once, batch by batch, reading only the columns the chosen figures
need (see `obiwan_h5.plot_accumulate`); memory is bounded by the batch size plus fixed
histograms and capped random samples, whatever the size of the file. Only bricks whose
status is done are used. Works on DR5- and DR3-schema files and on ``view``/``subset`` files;
a figure whose columns are absent or whose data are empty renders with a "no data" note,
and is listed, with the reason, under ``skipped`` (the command prints them, and exits with
status 1 when no figure could be drawn).
"""

import datetime
import html
import json
import os

import numpy as np

from .. import __version__
from ..core.bricks import DEFAULT_SEED, brick_names
from ..core.deprecation import renamed_keywords
from ..errors import InputError
from ..fileformat import DONE
from ..outputs import writing
from ..progress import start_progress
from ..read.common import check_fraction, check_output, open_derived, sample_bricks
from ..read.common import select_bricks as select_known_bricks
from ..read.reader import DEFAULT_BATCH_ROWS
from .accumulate import ACCUMULATORS, INJECTED_CLASSES, TYPE_COLUMNS
from .draw import DRAWERS
from .draw_families import FAMILY_DRAWERS
from .draw_thesis import THESIS_DRAWERS
from .families import FAMILY_ACCUMULATORS
from .stats import MAG_BINS, MIN_BIN_COUNT, coalesce
from .thesis import THESIS_ACCUMULATORS

__all__ = ["FIGURES", "make_figures", "select_bricks"]

# (section title, figures), in page order
SECTIONS = (
    ("Injected sources", ("inputs",)),
    ("Recovery, photometry and astrometry", ("recovery", "flux_residuals", "residuals", "astrometry")),
    ("Morphology", ("confusion", "morphology")),
    ("Target selection and colour space", ("targets", "colours")),
    ("Imaging systematics", ("systematics",)),
    ("Per brick", ("skymap",)),
)
FIGURES = tuple(name for _, names in SECTIONS for name in names)
ALL_ACCUMULATORS = {**ACCUMULATORS, **THESIS_ACCUMULATORS, **FAMILY_ACCUMULATORS}
ALL_DRAWERS = {**DRAWERS, **THESIS_DRAWERS, **FAMILY_DRAWERS}
# rows kept per band in the random samples behind the robust statistics and 2-D histograms
DEFAULT_MAX_SAMPLE = 200_000

CAPTIONS = {
    "recovery": "Fraction of injected sources recovered (a Tractor source within the {radius:g}″ match radius, "
                "obiwan_mask bit 0) in 0.2-mag bins of true de-extincted magnitude (simcat flux / mw_transmission), "
                "with 68% Wilson binomial intervals; ◆ marks the 50% point, linearly interpolated between the faintest "
                f"bin (≥{MIN_BIN_COUNT} sources) still at ≥ 50% and the next.",
    "flux_residuals": "Recovered sources: Tractor flux minus the flux added to the images (simcat gflux/rflux/zflux) — "
                      "both extincted, neither divided by mw_transmission — in nanomaggies (top), and divided by "
                      "σ = 1/√flux_ivar (bottom, unit Gaussian dashed); median and robust σ = 1.4826·MAD annotated.",
    "astrometry": "Recovered sources: Tractor minus injected position, Δra·cos(dec) and Δdec in arcsec, as a 2-D "
                  "histogram (log colour scale) with marginal histograms; median and robust σ = 1.4826·MAD.",
    "confusion": "Injected morphology from the simcat Sérsic index n and half-light radius rhalf (PSF-like: "
                 "rhalf < 0.05″ or n < 0.5; EXP-like: 0.5 ≤ n < 2.5, i.e. n≈1; DEV-like: n ≥ 2.5, i.e. n≈4) "
                 "vs the type Tractor fit to the matched source; rows normalised, cells show fraction (count); "
                 "last column: not recovered.",
    "targets": "Completeness = true∧measured / true and contamination = measured∧¬true / measured (targets_mask "
               "bits 3–5 vs 0–2), in 0.2-mag bins of true de-extincted r (DESI ELG) or g (eBOSS ELG), with 68% "
               "Wilson intervals; legend: totals; grey: numbers of true- and measured-selected sources.",
    "inputs": "Injected sources. Top: true de-extincted magnitudes (simcat flux / mw_transmission) of all and of "
              "recovered sources, the magnitudes as added to the images (with extinction) and the measured "
              "de-extincted Tractor magnitudes (with noise) of recovered sources, and true colours; middle: "
              "injected rhalf, n, e1, e2 (simcat, else the truth table's psql_ columns), all and recovered; "
              "bottom: recovered fraction vs rhalf, redshift, n and e1 with 68% Wilson intervals (bins with "
              "≥ 5 sources).",
    "morphology": "Injected morphology class (as in the confusion matrix) of all and of recovered sources, the "
                  "Tractor types of recovered sources, the injected rhalf distribution per fitted type, and "
                  "measured vs injected rhalf, e1, e2 of recovered galaxy fits (shapedev for DEV, shapeexp "
                  "otherwise) as 2-D histograms with the mean measured value per injected bin; only fits that "
                  "measure the parameter: rhalf leaves out PSF, SIMP and COMP, e1/e2 also the round REX.",
    "colours": "g−r vs r−z in 0.05-mag bins (log colour scale): recovered and lost sources and the recovered "
               "fraction at true de-extincted colours; where recovered sources of each Tractor type lie (contour "
               "around the cells holding 68% of them); for each selection the contaminating sources (measured-"
               "selected but not true-selected) at their measured colours, with a contour around the colours "
               "of the true-selected targets. Colours outside −0.5…2.0 (g−r) and −0.5…2.5 (r−z) not shown.",
    "residuals": "Recovered sources: residuals in units of the Tractor σ — flux per band (Tractor minus "
                 "injected, both extincted, × √flux_ivar), and half-light radius and e1/e2 (Tractor shapeexp for "
                 "EXP/REX/SIMP, shapedev for DEV, minus the injected value, × √ivar) — as densities within ±6 with "
                 "the unit normal (dashed) and a least-squares Gaussian fit (solid); bottom: flux residual/σ vs "
                 "true magnitude (log grey scale) with its median and quartiles per 0.2-mag bin; last row: true minus "
                 "Tractor magnitude (both extincted) vs true magnitude, likewise.",
    "systematics": "Recovered fraction (top two rows; black: all injected sources, dashed: true-selected "
                   "targets of each selection) and the ratio of measured- to true-selected targets (bottom two "
                   "rows; dotted: the ratio over all bricks) in bins of each brick's imaging conditions from the "
                   "summary (5σ galaxy and PSF depth and PSF FWHM of its recovered sources, per band, and E(B-V)); "
                   "up to 8 bins of about equal numbers of bricks (grey: bricks per bin), points at the median "
                   "brick value; 68% Wilson intervals (ratio: Wilson on n_meas/(n_meas+n_true)).",
    "skymap": "Per-brick frac_recovered and galdepth_g (5σ AB galaxy depth from the median galdepth inverse "
              "variance of the brick's recovered sources) from the summary table, drawn as brick-sized squares "
              "at the brick centres (RA increasing to the left).",
}


# ------------------------------------------------------------------------------- options

def _parse_only(only):
    if only is None:
        return list(FIGURES)
    items = only.replace(",", " ").split() if isinstance(only, str) else [str(item) for item in only]
    unknown = [item for item in items if item not in FIGURES]
    if unknown:
        raise InputError(f"unknown figure {unknown[0]!r} in `only` (choose from {', '.join(FIGURES)})")
    if not items:
        raise InputError(f"`only` names no figure (choose from {', '.join(FIGURES)})")
    return [name for name in FIGURES if name in items]


def select_bricks(derived, bricks=None, sample=None, seed=DEFAULT_SEED):
    """Done bricks to use, in file order, and a description of the choice.

    Parameters
    ----------
    derived : `obiwan_h5.reader.DerivedFile`
    bricks : str or sequence of str, optional
        Names (comma/space separated) or the path of a brick-list file; None: all bricks.
    sample : float, optional
        Keep a random fraction (0 < sample <= 1, at least one brick) of the done bricks,
        drawn with ``numpy.random.default_rng(seed)``: the same seed gives the same bricks.
    """
    names = derived.bricknames
    status = dict(zip(names, derived.bricks["status"]))
    requested = names if bricks is None else select_known_bricks(derived, brick_names(bricks))
    done = [name for name in requested if status[name] == DONE]
    used = done
    if sample is not None:
        check_fraction(sample, "sample")
        if done:
            used = sample_bricks(done, sample, seed, option="sample")
    info = {"n_bricks_in_file": len(names), "n_bricks_requested": len(requested),
            "n_bricks_not_done": len(requested) - len(done), "n_bricks_used": len(used),
            "sample": sample, "seed": seed, "names": used}
    return used, info


# ---------------------------------------------------------------------------------- main

@renamed_keywords(out_dir="output")
def make_figures(path, output, only=None, bricks=None, sample=None, seed=DEFAULT_SEED,
                 batch_rows=DEFAULT_BATCH_ROWS, max_sample=DEFAULT_MAX_SAMPLE, progress=False):
    """Make the chosen figures, ``index.html`` and ``numbers.json`` in the directory `output`.

    Parameters
    ----------
    path : str
        Derived file (or a view or subset of one).
    output : str
        Output directory, created if needed; existing figures of the same names are
        replaced, once every new one is written. Formerly ``out_dir``, still accepted
        with a `DeprecationWarning`.
    only : str or list of str, optional
        Figure names out of `FIGURES` (default all).
    bricks, sample, seed
        Brick choice, see `select_bricks`; `seed` also seeds the capped random samples.
    batch_rows : int
        Rows per read; memory is bounded by about twice this many rows of the needed columns.
    max_sample : int
        Rows per band kept for the robust statistics and 2-D histograms (all when fewer).
    progress : bool or progress.ProgressStyle
        Show the rows read out of those of the chosen bricks on stderr
        (`obiwan_h5.progress`); off by default.

    Returns
    -------
    dict
        What ``numbers.json`` holds: ``figures`` (name -> numbers behind the figure),
        ``drawn`` (names of the figures that have data), ``skipped`` (name -> why a figure
        has no data: a column absent from the file, no rows; it is still written, as a
        "no data" panel), ``bricks`` (how they were chosen), ``rows_used``, ``files``,
        ``index`` (path of index.html), ...

    Raises
    ------
    InputError
        Unreadable or non-derived input, unknown figure or brick, bad sample fraction.
    OutputError
        No space (or quota) left for the figures: nothing of them is left behind.
    """
    check_output(output, True, directory=True)
    # built in a partial directory, moved into place only when every file is written
    with writing(output, directory=True) as partial:
        return _make_figures(path, output, partial.path, only, bricks, sample, seed, batch_rows, max_sample,
                             progress)


def _make_figures(path, output, folder, only, bricks, sample, seed, batch_rows, max_sample, progress):
    names = _parse_only(only)
    if int(batch_rows) < 1:
        raise InputError(f"`batch_rows` must be positive, not {batch_rows}")
    with open_derived(path) as derived:
        chosen, brick_info = select_bricks(derived, bricks, sample, seed)
        radius = float(derived.attrs.get("match_radius_arcsec", 1.0))
        accumulators = {name: ALL_ACCUMULATORS[name](derived.columns, np.random.default_rng([seed, i]),
                                                     max_sample, radius)
                        for i, name in enumerate(FIGURES) if name in names}
        streamed = [acc for acc in accumulators.values() if acc.name != "skymap" and acc.missing is None]
        columns = []
        for acc in streamed:
            columns.extend(name for name in acc.columns() if name not in columns)
        rows = 0
        if columns and chosen:
            everything = bricks is None and sample is None
            read_bricks = None if everything else chosen
            total = sum(stop - start for start, stop in derived.brick_ranges(read_bricks))
            shown = start_progress(progress, total, "rows", "plot")
            batches = derived.iter_batches(columns, bricks=read_bricks, batch_rows=int(batch_rows),
                                           on_read=lambda n: shown.update(n, rows=n))
            for batch in coalesce(batches, int(batch_rows)):
                rows += len(batch[columns[0]])
                for acc in streamed:
                    acc.add(batch)
            shown.close()
        for acc in accumulators.values():
            if hasattr(acc, "SUMMARY"):
                _load_summary(derived, acc, chosen)
        input_attrs = {"software_version": str(derived.attrs.get("software_version", "")),
                       "nrows": derived.nrows}
    subtitle = (f"{os.path.basename(path)}: {brick_info['n_bricks_used']} bricks"
                f"{f' (sample {sample:g})' if sample is not None else ''}, {rows} rows")
    figures, files, skipped = {}, {}, {}
    for name, acc in accumulators.items():
        figures[name] = acc.numbers()
        reason = _skip_reason(acc, figures[name], rows)
        if reason:
            # drawn as a "no data" page all the same, so that links never break
            figures[name]["missing"] = skipped[name] = reason
        files[name] = f"{name}.png"
        ALL_DRAWERS[name](acc, figures[name], os.path.join(folder, files[name]), subtitle)
    numbers = {
        "input": os.path.abspath(path), "input_rows": input_attrs["nrows"],
        "input_software_version": input_attrs["software_version"], "software_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "bricks": brick_info, "rows_used": rows, "columns_read": columns, "mag_bins": list(map(float, MAG_BINS)),
        "match_radius_arcsec": radius, "max_sample": max_sample,
        "captions": {name: CAPTIONS[name].format(radius=radius) for name in figures},
        "files": files, "figures": figures, "skipped": skipped,
        "drawn": [name for name in figures if name not in skipped],
    }
    numbers = _jsonable(numbers)
    numbers_path = os.path.join(folder, "numbers.json")
    index_path = os.path.join(folder, "index.html")
    numbers["index"] = os.path.abspath(os.path.join(output, "index.html"))
    with open(numbers_path, "w") as handle:
        json.dump(numbers, handle, indent=1, allow_nan=False)
    with open(index_path, "w") as handle:
        handle.write(_index_html(numbers))
    return numbers


def _skip_reason(acc, numbers, rows):
    """Why a figure has no data at all (it is then drawn as a "no data" panel), or None."""
    if acc.missing:
        return acc.missing
    if hasattr(acc, "SUMMARY"):
        bricks = numbers.get("n_bricks")
        return None if (sum(bricks) if isinstance(bricks, list) else bricks) else "no done brick chosen"
    return None if rows else "no rows in the chosen done bricks"


def _load_summary(derived, acc, chosen):
    """Give an accumulator with a ``SUMMARY`` list the summary rows of the chosen bricks."""
    wanted = [name for name in acc.SUMMARY + ("brick_area",) if name in derived.summary_columns]
    if not chosen:
        acc.set_summary({name: np.zeros(0) for name in wanted}, derived.summary_columns)
        return
    table = derived.summary(wanted, bricks=chosen, as_="numpy") if wanted else {}
    acc.set_summary(table, derived.summary_columns)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


# ---------------------------------------------------------------------------- index page

def _f(value, spec=".3f"):
    return "n/a" if value is None else format(value, spec)


def _table(header, rows):
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _numbers_table(name, d):
    if d.get("missing"):
        return f"<p class='missing'>no data: {html.escape(d['missing'])}</p>"
    if name == "recovery":
        rows = [[b, v["mag50"] is None and "not reached" or _f(v["mag50"], ".2f"), sum(v["n"]),
                 sum(v["n_recovered"])] for b, v in d["bands"].items()]
        return (f"<p>overall recovered fraction {_f(d['fraction_recovered'])} "
                f"({d['n_recovered']} of {d['n_rows']} injected)</p>"
                + _table(["band", "50% magnitude [AB]", "injected (binned)", "recovered (binned)"], rows))
    if name == "flux_residuals":
        rows = [[b, v["n"], _f(v["median_delta"], ".4f"), _f(v["sigma_delta"], ".4f"), _f(v["median_chi"]),
                 _f(v["sigma_chi"])] for b, v in d["bands"].items()]
        return _table(["band", "N recovered", "median Δflux [nmgy]", "robust σ Δflux [nmgy]",
                       "median Δ/σ", "robust σ of Δ/σ"], rows)
    if name == "astrometry":
        return _table(["N recovered", "median Δra·cos(dec) [″]", "robust σ [″]", "median Δdec [″]",
                       "robust σ [″]", "median separation [″]"],
                      [[d["n"], _f(d["median_dra"], "+.4f"), _f(d["sigma_dra"], ".4f"), _f(d["median_ddec"], "+.4f"),
                        _f(d["sigma_ddec"], ".4f"), _f(d["median_separation"], ".4f")]])
    if name == "confusion":
        rows = [[cls, sum(counts)] + list(counts) for cls, counts in zip(INJECTED_CLASSES, d["counts"])
                if sum(counts) or cls != "unknown"]
        return (f"<p>counts; {html.escape(d['morphology_source'])}</p>"
                + _table(["injected", "N"] + list(TYPE_COLUMNS), rows))
    if name == "targets":
        rows = [[v["label"], v["band"], v["n_true"], v["n_measured"], v["n_true_and_measured"],
                 v["n_measured_not_true"], _f(v["completeness"]), _f(v["contamination"])]
                for v in d["selections"].values()]
        return _table(["selection", "mag axis", "true", "measured", "true ∧ measured", "measured ∧ ¬true",
                       "completeness", "contamination"], rows)
    if name == "inputs":
        rows = [[b, sum(v["n"]), sum(v["n_recovered"])] for b, v in d["bands"].items()]
        rows += [[key, sum(v["n"]), sum(v["n_recovered"])] for key, v in d["properties"].items()]
        return _table(["quantity", "injected (in range)", "recovered (in range)"], rows)
    if name == "morphology":
        rows = [[cls, n, k, _f(f)] for cls, n, k, f in zip(d["classes"], d["n_input"], d["n_recovered"],
                                                         d["fraction"]) if n]
        return (_table(["injected class", "injected", "recovered", "fraction"], rows)
                + _table(["Tractor type"] + d["types"], [["recovered"] + d["n_measured_type"]]))
    if name == "colours":
        return _table(["map", "sources in the colour window"], [[key, n] for key, n in d["totals"].items()])
    if name == "residuals":
        rows = [[v["label"], v["n"], v["n_outside_bins"], _f(v["fit_mean"], "+.3f"), _f(v["fit_sigma"])]
                for v in d["quantities"].values()]
        return _table(["residual", "N", "beyond ±6", "fit mean", "fit σ"], rows)
    if name == "systematics":
        rows = []
        for prop in d["properties"].values():
            if not prop.get("n_bricks"):
                continue
            fractions = [v for v in prop["fraction"] if v is not None]
            row = [prop["label"], len(prop["n_bricks"]),
                   f"{_f(min(fractions) if fractions else None)} – {_f(max(fractions) if fractions else None)}"]
            for sel in ("desi_elg", "eboss_ngc", "eboss_sgc"):
                ratios = [v for v in prop["selections"][sel]["ratio"] if v is not None]
                row.append(f"{_f(min(ratios), '.2f')} – {_f(max(ratios), '.2f')}" if ratios else "n/a")
            rows.append(row)
        ratio = d["density_ratio"]
        return (f"<p>{d['n_bricks']} bricks, {d['n_rows']} rows; overall recovered fraction "
                f"{_f(d['fraction_recovered'])}; measured/true selected: DESI ELG {_f(ratio['desi_elg'], '.2f')}, "
                f"eBOSS NGC {_f(ratio['eboss_ngc'], '.2f')}, eBOSS SGC {_f(ratio['eboss_sgc'], '.2f')}. Range over "
                "bins (every bin: numbers.json):</p>"
                + _table(["property", "bins", "recovered fraction", "DESI ELG meas/true", "eBOSS NGC meas/true",
                          "eBOSS SGC meas/true"], rows))
    if name == "skymap":
        rows = [[key, _f(v["median"]), _f(v["min"]), _f(v["max"])]
                for key, v in d.items() if isinstance(v, dict)]
        return f"<p>{d['n_bricks']} bricks</p>" + _table(["summary column", "median", "min", "max"], rows)
    return ""


TITLES = {"recovery": "Recovered fraction vs true magnitude", "flux_residuals": "Flux residuals",
          "astrometry": "Astrometric residuals", "confusion": "Injected morphology vs Tractor type",
          "targets": "Target selection: completeness and contamination", "skymap": "Sky maps per brick",
          "residuals": "Residuals in units of σ, and vs magnitude",
          "inputs": "Input distributions and recovery vs injected properties",
          "morphology": "Per-type counts and shape recovery",
          "colours": "Colour space: recovered, lost, contaminating",
          "systematics": "Imaging systematics: recovery and target density vs depth, seeing, extinction"}


def _index_html(numbers):
    bricks = numbers["bricks"]
    sample = "" if bricks["sample"] is None else (
        f", random sample {bricks['sample']:g} of the done bricks (seed {bricks['seed']})")
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>obiwan_h5 figures</title><style>",
        "body{font-family:sans-serif;max-width:1250px;margin:1em auto;padding:0 1em;color:#222}",
        "img{max-width:100%;border:1px solid #ccc}table{border-collapse:collapse;margin:.4em 0}",
        "td,th{border:1px solid #bbb;padding:2px 8px;text-align:right}th{background:#eee}",
        ".caption{font-size:95%}.missing{color:#a00}section{margin-bottom:2.5em}",
        "</style></head><body>",
        "<h1>obiwan_h5 analysis figures</h1>",
        f"<p>Input <code>{html.escape(numbers['input'])}</code> ({numbers['input_rows']} rows); "
        f"{bricks['n_bricks_used']} of {bricks['n_bricks_in_file']} bricks used, "
        f"{numbers['rows_used']} rows{html.escape(sample)}; "
        f"{bricks['n_bricks_not_done']} requested bricks not done (skipped). "
        f"Made {html.escape(numbers['created'])} by obiwan_h5 {html.escape(numbers['software_version'])}. "
        "All numbers: <a href='numbers.json'>numbers.json</a>.</p>",
    ]
    if numbers["skipped"]:
        parts.append("<p class='missing'>Skipped (no data): " + "; ".join(
            f"{html.escape(TITLES[name])} — {html.escape(reason)}" for name, reason in numbers["skipped"].items())
            + "</p>")
    sections = [(title, [name for name in names if name in numbers["files"]]) for title, names in SECTIONS]
    sections = [(title, names) for title, names in sections if names]
    parts.append("<ul>" + "".join(
        f"<li>{html.escape(title)}<ul>" + "".join(
            f"<li><a href='#{name}'>{html.escape(TITLES[name])}</a></li>" for name in names) + "</ul></li>"
        for title, names in sections) + "</ul>")
    for title, names in sections:
        parts.append(f"<h2 class='section'>{html.escape(title)}</h2>")
        for name in names:
            filename = numbers["files"][name]
            parts.append(f"<section id='{name}'><h3>{html.escape(TITLES[name])}</h3>"
                         f"<p class='caption'>{html.escape(numbers['captions'][name])}</p>"
                         f"<a href='{html.escape(filename)}'><img src='{html.escape(filename)}' alt='{name}'></a>"
                         f"{_numbers_table(name, numbers['figures'][name])}</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
