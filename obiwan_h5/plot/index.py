"""``index.html`` of `obiwan-h5 plot`: a table of contents, then each figure at a readable
size (a click opens it at full size) beside its caption and the numbers behind it.

The page is written from what ``numbers.json`` holds, and nothing else, so the two always
agree; its links are relative, so the directory can be copied anywhere as it is.
"""

import html

from .accumulate import INJECTED_CLASSES, TYPE_COLUMNS
from .captions import TITLES
from .registry import SECTIONS
from .selmap import numbers_html as selmap_html

__all__ = ["index_html"]

STYLE = """
body{font-family:sans-serif;margin:0;color:#222;line-height:1.35}
main{max-width:1640px;margin:0 auto;padding:0 1.2em 2em}
nav.bar{position:sticky;top:0;z-index:1;background:#f6f6f6;border-bottom:1px solid #ccc;
  padding:.35em 1.2em;font-size:90%}
nav.bar a{margin-right:.9em;white-space:nowrap}
.toc li{margin:.1em 0}
.figure{display:flex;flex-wrap:wrap;gap:1.2em;align-items:flex-start}
.figure .image{flex:1 1 820px;max-width:1180px}
.figure .image img{width:100%;height:auto;border:1px solid #ccc}
.figure .numbers{flex:1 1 330px;font-size:92%}
section{scroll-margin-top:2.6em;margin-bottom:2.2em}
table{border-collapse:collapse;margin:.4em 0}
td,th{border:1px solid #bbb;padding:2px 7px;text-align:right}th{background:#eee}
.missing{color:#a00}.note{color:#555;font-size:92%}
"""


def index_html(numbers):
    """The whole page, from the dict `make_figures` writes as ``numbers.json``."""
    bricks = numbers["bricks"]
    sample = "" if bricks["sample"] is None else (
        f", random sample {bricks['sample']:g} of the done bricks (seed {bricks['seed']})")
    chosen = [(title, [name for name, _, _ in figures if name in numbers["figures"]]) for title, figures in SECTIONS]
    chosen = [(title, names) for title, names in chosen if names]
    drawn = set(numbers["drawn"])
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>obiwan_h5 figures</title>",
        f"<style>{STYLE}</style></head><body>",
        "<nav class='bar'><a href='#top'>↑ contents</a>" + "".join(
            f"<a href='#{name}'>{name}</a>" for _, names in chosen for name in names if name in drawn) + "</nav>",
        "<main><h1 id='top'>obiwan_h5 analysis figures</h1>",
        f"<p>Input <code>{_e(numbers['input'])}</code> ({numbers['input_rows']} rows); "
        f"{bricks['n_bricks_used']} of {bricks['n_bricks_in_file']} bricks used, "
        f"{numbers['rows_used']} rows{_e(sample)}; "
        f"{bricks['n_bricks_not_done']} requested bricks not done (skipped). "
        f"Made {_e(numbers['created'])} by obiwan_h5 {_e(numbers['software_version'])}. "
        f"{len(numbers['drawn'])} figures drawn, {len(numbers['skipped'])} skipped. "
        "All numbers: <a href='numbers.json'>numbers.json</a>. Click a figure for its full size.</p>",
    ]
    if numbers["skipped"]:
        parts.append("<p class='missing'>Skipped (no data, not drawn): " + "; ".join(
            f"<b>{_e(name)}</b> ({_e(TITLES[name])}) — {_e(reason)}" for name, reason in numbers["skipped"].items())
            + "</p>")
    parts.append("<h2>Contents</h2><ol class='toc'>" + "".join(
        f"<li>{_e(title)}<ul>" + "".join(_toc_entry(name, numbers) for name in names) + "</ul></li>"
        for title, names in chosen) + "</ol>")
    for title, names in chosen:
        names = [name for name in names if name in drawn]
        if not names:
            continue
        parts.append(f"<h2>{_e(title)}</h2>")
        for name in names:
            filename = _e(numbers["files"][name])
            parts.append(
                f"<section id='{name}'><h3>{_e(TITLES[name])} <small>({name})</small></h3><div class='figure'>"
                f"<div class='image'><a href='{filename}'><img src='{filename}' alt='{_e(TITLES[name])}' "
                f"loading='lazy'></a></div><div class='numbers'><p class='caption'>{_e(numbers['captions'][name])}"
                f"</p>{numbers_table(name, numbers['figures'][name])}</div></div></section>")
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


def _toc_entry(name, numbers):
    if name in numbers["skipped"]:
        return (f"<li class='missing'>{_e(TITLES[name])} — skipped: {_e(numbers['skipped'][name])}</li>")
    return f"<li><a href='#{name}'>{_e(TITLES[name])}</a></li>"


def _e(text):
    return html.escape(str(text))


def _f(value, spec=".3f"):
    return "n/a" if value is None else format(value, spec)


def _table(header, rows):
    head = "".join(f"<th>{_e(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def numbers_table(name, d):
    """The numbers behind figure `name` as HTML tables (its numbers dict `d`)."""
    table = _TABLES.get(name)
    return table(d) if table else ""


def _recovery(d):
    rows = [[b, "not reached" if v["mag50"] is None else _f(v["mag50"], ".2f"), sum(v["n"]), sum(v["n_recovered"])]
            for b, v in d["bands"].items()]
    return (f"<p>overall recovered fraction {_f(d['fraction_recovered'])} "
            f"({d['n_recovered']} of {d['n_rows']} injected)</p>"
            + _table(["band", "50% magnitude [AB]", "injected (binned)", "recovered (binned)"], rows))


def _flux_residuals(d):
    rows = [[b, v["n"], _f(v["median_delta"], ".4f"), _f(v["sigma_delta"], ".4f"), _f(v["median_chi"]),
             _f(v["sigma_chi"])] for b, v in d["bands"].items() if v["n"]]
    return _table(["band", "N recovered", "median Δflux [nmgy]", "robust σ Δflux [nmgy]", "median Δ/σ",
                   "robust σ of Δ/σ"], rows)


def _astrometry(d):
    return _table(["N recovered", "median Δra·cos(dec) [″]", "robust σ [″]", "median Δdec [″]", "robust σ [″]",
                   "median separation [″]"],
                  [[d["n"], _f(d["median_dra"], "+.4f"), _f(d["sigma_dra"], ".4f"), _f(d["median_ddec"], "+.4f"),
                    _f(d["sigma_ddec"], ".4f"), _f(d["median_separation"], ".4f")]])


def _confusion(d):
    columns = [TYPE_COLUMNS.index(name) for name in d["columns_shown"]]
    rows = [[cls, sum(counts)] + [counts[j] for j in columns]
            for cls, counts in zip(INJECTED_CLASSES, d["counts"]) if cls in d["rows_shown"]]
    return f"<p>counts; {_e(d['morphology_source'])}</p>" + _table(["injected", "N"] + d["columns_shown"], rows)


def _targets(d):
    rows = [[v["label"], v["band"], v["n_true"], v["n_measured"], v["n_true_and_measured"], v["n_measured_not_true"],
             v["n_measured_beyond_cut"], _f(v["completeness"]), _f(v["contamination"]),
             _f(v["contamination_within_cut"])] for v in d["selections"].values()]
    return _table(["selection", "mag axis", "true", "measured", "true ∧ measured", "measured ∧ ¬true",
                   "measured beyond the cut", "completeness", "contamination", "contamination within the cut"],
                  rows)


def _inputs(d):
    rows = [[f"{b} magnitude", sum(v["n"]), sum(v["n_recovered"])] for b, v in d["bands"].items()]
    rows += [[key, sum(v["n"]), sum(v["n_recovered"])] for key, v in d["properties"].items()]
    text = _table(["quantity", "injected (in range)", "recovered (in range)"], rows)
    for key, v in d["properties"].items():
        if v["discrete"]:
            values = v["discrete"]
            text += f"<p class='note'>{_e(key)} takes {len(values['values'])} values:</p>" + _table(
                [key, "injected", "recovered", "fraction"],
                [[f"{x:g}", n, k, _f(f)] for x, n, k, f in zip(values["values"], values["n"], values["n_recovered"],
                                                             values["fraction"])])
    return text


def _morphology(d):
    rows = [[cls, n, k, _f(f)] for cls, n, k, f in zip(d["classes"], d["n_input"], d["n_recovered"], d["fraction"])
            if cls in d["classes_shown"]]
    counts = dict(zip(d["types"], d["n_measured_type"]))
    return (_table(["injected class", "injected", "recovered", "fraction"], rows)
            + _table(["Tractor type"] + d["types_shown"], [["recovered"] + [counts[t] for t in d["types_shown"]]]))


def _colours(d):
    return _table(["map", "sources in the colour window"], [[key, n] for key, n in d["totals"].items() if n])


def _residuals(d):
    rows = [[v["label"], v["n"], v["n_outside_bins"], _f(v["robust_median"], "+.2f"), _f(v["robust_sigma"], ".2f"),
             _f(v["fit_mean"], "+.2f"), _f(v["fit_sigma"], ".2f")] for v in d["quantities"].values() if v["n"]]
    return _table(["residual", "N", "beyond ±6", "median", "robust σ", "fit mean", "fit σ"], rows)


def _systematics(d):
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


def _skymap(d):
    rows = [[key, _f(v["median"]), _f(v["min"]), _f(v["max"])] for key, v in d.items() if isinstance(v, dict)]
    return f"<p>{d['n_bricks']} bricks</p>" + _table(["summary column", "median", "min", "max"], rows)


def _selmap(d):
    return selmap_html(d, _table)


_TABLES = {"recovery": _recovery, "flux_residuals": _flux_residuals, "astrometry": _astrometry,
           "confusion": _confusion, "targets": _targets, "inputs": _inputs, "morphology": _morphology,
           "colours": _colours, "residuals": _residuals, "systematics": _systematics, "skymap": _skymap,
           "selmap": _selmap}
