"""`obiwan-h5 plot`: the standard analysis figures of a derived file (docs/plot.md).

::

    obiwan-h5 plot derived.h5 -o figures [--bricks FILE|LIST|-] [--sample F --seed S]
                                         [--only recovery,targets] [--batch-rows N]

writes one PNG per figure that has data, ``index.html`` (a table of contents, then every
figure with its caption and the numbers behind it) and ``numbers.json`` into the output
directory. From Python::

    from obiwan_h5.plot import make_figures
    numbers = make_figures("derived.h5", "figures", only=["recovery"], sample=0.1)
    numbers["figures"]["recovery"]["bands"]["g"]["mag50"]

The rows are streamed once, batch by batch, reading only the columns the chosen figures
need; memory is bounded by the batch size plus fixed histograms and capped random samples,
whatever the size of the file. Only bricks whose status is done are used. Works on DR5- and
DR3-schema files and on ``view``/``subset`` files, using every column that can serve
(`plot.sources`). A figure that cannot be made from the file, or whose data are empty, is
not drawn: it is listed, with the reason, under ``skipped`` (the command prints them, and
exits with status 1 when no figure could be drawn). The figures are listed in
`plot.registry`, their captions in `plot.captions`, the page in `plot.index`.
"""

import datetime
import json
import os

import numpy as np

from .. import __version__
from ..core.bricks import DEFAULT_SEED
from ..core.deprecation import renamed_keywords
from ..errors import InputError
from ..fileformat import DONE
from ..outputs import writing
from ..progress import start_progress
from ..read.common import check_fraction, check_output, open_derived, sample_bricks, select_bricks
from ..read.reader import DEFAULT_BATCH_ROWS
from .accumulate import BRICK_INDEX
from .captions import caption
from .index import index_html
from .registry import ACCUMULATORS, DRAWERS, FIGURES
from .stats import MAG_BINS, coalesce

__all__ = ["DEFAULT_MAX_SAMPLE", "FIGURES", "bricks_used", "make_figures"]

# rows kept per band in the random samples behind the robust statistics and 2-D histograms
DEFAULT_MAX_SAMPLE = 200_000


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


def bricks_used(derived, bricks=None, sample=None, seed=DEFAULT_SEED):
    """The done bricks the figures use, in file order, and a description of the choice.

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
    requested = names if bricks is None else select_bricks(derived, bricks)
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
        replaced once every new one is written, and those of skipped figures removed.
        Formerly ``out_dir``, still accepted with a `DeprecationWarning`.
    only : str or list of str, optional
        Figure names out of `FIGURES` (default all).
    bricks, sample, seed
        Brick choice, see `bricks_used`; `seed` also seeds the capped random samples.
    batch_rows : int
        Rows per read; memory is bounded by about twice this many rows of the needed columns.
    max_sample : int
        Rows per band kept for the robust statistics and 2-D histograms (all when fewer).
    progress : bool or progress.ProgressStyle
        Show on stderr the rows read out of those of the chosen bricks, then the figure
        being drawn, ``k/n figures`` (`obiwan_h5.progress`); off by default.

    Returns
    -------
    dict
        What ``numbers.json`` holds: ``figures`` (name -> numbers behind the figure),
        ``drawn`` (the figures drawn, one PNG each, listed in ``files``), ``skipped`` (name
        -> why a figure was not drawn: a column absent from the file, no rows, nothing
        recovered...), ``captions``, ``bricks`` (how they were chosen), ``rows_used``,
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
        chosen, brick_info = bricks_used(derived, bricks, sample, seed)
        radius = float(derived.attrs.get("match_radius_arcsec", 1.0))
        accumulators = {name: ACCUMULATORS[name](derived.columns, np.random.default_rng([seed, i]),
                                                 max_sample, radius)
                        for i, name in enumerate(FIGURES) if name in names}
        streamed = [acc for acc in accumulators.values() if acc.missing is None and acc.columns()]
        columns = list(dict.fromkeys(name for acc in streamed for name in acc.columns()))
        rows = 0
        if columns and chosen:
            read_bricks = None if bricks is None and sample is None else chosen
            total = sum(stop - start for start, stop in derived.brick_ranges(read_bricks))
            shown = start_progress(progress, total, "rows", "plot")
            for batch in coalesce(_batches(derived, columns, read_bricks, int(batch_rows), shown), int(batch_rows)):
                rows += len(batch[columns[0]])
                for acc in streamed:
                    acc.add(batch)
            shown.close()
        for acc in accumulators.values():
            if hasattr(acc, "SUMMARY") and acc.missing is None:
                _load_summary(derived, acc, chosen)
        input_attrs = {"software_version": str(derived.attrs.get("software_version", "")),
                       "nrows": derived.nrows}
    figures, skipped = {}, {}
    for name, acc in accumulators.items():
        figures[name] = acc.numbers()
        reason = acc.missing or _no_rows(acc, rows) or acc.empty(figures[name])
        if reason:
            figures[name]["missing"] = skipped[name] = reason
    drawn = [name for name in figures if name not in skipped]
    subtitle = (f"{os.path.basename(path)}: {brick_info['n_bricks_used']} bricks"
                f"{f' (sample {sample:g})' if sample is not None else ''}, {rows} rows")
    files = _draw(accumulators, figures, drawn, folder, subtitle, progress)
    for name in skipped:  # a PNG an earlier run left would pass for this run's figure
        stale = os.path.join(output, f"{name}.png")
        if os.path.exists(stale):
            os.remove(stale)
    numbers = {
        "input": os.path.abspath(path), "input_rows": input_attrs["nrows"],
        "input_software_version": input_attrs["software_version"], "software_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "bricks": brick_info, "rows_used": rows, "columns_read": columns, "mag_bins": list(map(float, MAG_BINS)),
        "match_radius_arcsec": radius, "max_sample": max_sample,
        "captions": {name: caption(name, figures[name], radius) for name in figures},
        "files": files, "figures": figures, "skipped": skipped, "drawn": drawn,
    }
    numbers = _jsonable(numbers)
    index_path = os.path.join(folder, "index.html")
    numbers["index"] = os.path.abspath(os.path.join(output, "index.html"))
    with open(os.path.join(folder, "numbers.json"), "w") as handle:
        json.dump(numbers, handle, indent=1, allow_nan=False)
    with open(index_path, "w") as handle:
        handle.write(index_html(numbers))
    return numbers


def _batches(derived, columns, bricks, batch_rows, shown):
    """The reader's batches, each with the `BRICK_INDEX` of its rows.

    The reader yields the rows of `brick_ranges` in order, a batch never crossing a range,
    so a cursor over the ranges gives each row's position, and the brick offsets its brick.
    """
    offsets = np.asarray(derived.bricks["offset"], np.int64)
    ranges = iter(derived.brick_ranges(bricks))
    start = stop = 0
    for batch in derived.iter_batches(columns, bricks=bricks, batch_rows=batch_rows,
                                      on_read=lambda n: shown.update(n, rows=n)):
        size = len(batch[columns[0]])
        if start >= stop:
            start, stop = next(ranges)
        # a brick without rows shares its offset with the next: side="right" skips it
        batch[BRICK_INDEX] = np.searchsorted(offsets, np.arange(start, start + size), side="right") - 1
        start += size
        yield batch


def _no_rows(acc, rows):
    """A streamed figure has nothing when no row was read (summary-only figures are judged
    by their own numbers)."""
    return None if rows or not acc.columns() else "no rows in the chosen done bricks"


def _draw(accumulators, figures, drawn, output, subtitle, progress):
    """Draw the figures that have data, reporting ``k/n figures`` and the one being drawn."""
    files = {}
    shown = start_progress(progress, len(drawn), "figures", "plot", counts_rows=False)
    for name in drawn:
        shown.update(0, item=f"drawing {name}")
        files[name] = f"{name}.png"
        DRAWERS[name](accumulators[name], figures[name], os.path.join(output, files[name]), subtitle)
        shown.update(1)
    shown.close()
    return files


def _load_summary(derived, acc, chosen):
    """Give an accumulator with a ``SUMMARY`` list the summary rows of the chosen bricks,
    with their `BRICK_INDEX`."""
    wanted = [name for name in acc.SUMMARY + ("brick_area",) if name in derived.summary_columns]
    position = {name: i for i, name in enumerate(derived.bricknames)}
    table = derived.summary(wanted, bricks=chosen, as_="numpy") if wanted and chosen else {
        name: np.zeros(0) for name in wanted}
    table[BRICK_INDEX] = np.array(sorted(position[name] for name in chosen), np.int64)
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
