"""Selection-function maps: the per-pixel aggregation, pure numpy (`obiwan-h5 maps`).

The rows of a derived file are counted per ``(brick, pixel)`` key: injected, recovered,
and for each selection of ``targets_mask`` true-selected, measured-selected and both
(`count_rows`). Counts are integers, so partial counts of any split of the rows (batches,
MPI ranks) add up to the same numbers in any order (`PixelCounts`, `merge_counts`). The
table of a map (`pixel_table`) is made from the merged counts: per pixel the sums over its
bricks, the fractions with their binomial errors, and the injection-weighted means of the
bricks' summary values; its floating-point sums run in one fixed order (pixel, then brick),
so the result does not depend on how the rows were split.

Pixel numbers come from the caller (the HEALPix library is an I/O-side dependency); here a
pixel is any integer in ``[0, npix)``.
"""

import numpy as np

from ..errors import InputError
from ..fileformat import (
    RECOVERED_BIT,
    SELECTION_LABELS,
    SELECTIONS,
    SUMMARY_COLUMNS,
    is_recovered,
    is_selected,
    target_bit,
)

__all__ = [
    "COUNTS", "IMAGING", "MAX_NSIDE", "MAP_COLUMNS", "PixelCounts", "check_nside", "count_rows", "degrade_nest",
    "fractions", "merge_counts", "pixel_table",
]

# the largest HEALPix resolution a map is made at (pixels of 3.2 arcsec: far below the
# scale at which an injection-based selection function has any signal)
MAX_NSIDE = 1 << 16

# integer counts per key, in this order
COUNTS = ("n_inj", "n_rec") + tuple(f"n_{kind}_{sel}" for sel in SELECTIONS for kind in ("true", "meas", "both"))
_COUNT_INDEX = {name: i for i, name in enumerate(COUNTS)}

# summary columns averaged per pixel, weighted by the injected sources of each brick
IMAGING = tuple(f"{kind}_{band}" for kind in ("galdepth", "psfdepth", "psfsize") for band in "grz") + ("ebv",)


def _map_columns():
    """name -> (dtype, unit, description) of every column of a map, after the pixel number.

    Each description fits one FITS header card (68 characters).
    """
    cols = {
        "n_inj": ("i8", "", "injected sources in the pixel (done bricks, rows passing `where`)"),
        "n_rec": ("i8", "", f"of which recovered (obiwan_mask bit {RECOVERED_BIT})"),
        "frac_recovered": ("f8", "", "recovered fraction n_rec / n_inj"),
        "frac_recovered_err": ("f8", "", "binomial error of frac_recovered: sqrt(f (1 - f) / n_inj)"),
    }
    for sel in SELECTIONS:
        label, meas, true = SELECTION_LABELS[sel], target_bit(sel), target_bit(sel, true=True)
        cols[f"n_true_{sel}"] = ("i8", "", f"{label} on true fluxes (targets_mask bit {true})")
        cols[f"n_meas_{sel}"] = ("i8", "", f"{label} on measured fluxes (targets_mask bit {meas})")
        cols[f"n_both_{sel}"] = ("i8", "", f"{label} on true and measured fluxes (bits {true} and {meas})")
        cols[f"selfunc_{sel}"] = ("f8", "", f"{label} selection function: n_meas / n_inj")
        cols[f"selfunc_err_{sel}"] = ("f8", "", f"binomial error of selfunc_{sel}: sqrt(p (1 - p) / n_inj)")
        cols[f"completeness_{sel}"] = ("f8", "", f"{label} completeness n_both / n_true; NaN if n_true = 0")
        cols[f"contamination_{sel}"] = ("f8", "", f"{label} contamination 1 - n_both / n_meas; NaN if n_meas = 0")
    for name in IMAGING:
        unit = SUMMARY_COLUMNS[name][2]
        cols[name] = ("f8", unit, f"summary {name} of the pixel's bricks, mean weighted by n_inj")
    cols["n_bricks"] = ("i8", "", "bricks with injected sources in the pixel")
    return cols


MAP_COLUMNS = _map_columns()


def check_nside(nside):
    """`nside` as an int if it is a power of two in ``[1, MAX_NSIDE]``, else `InputError`."""
    try:
        value = int(nside)
    except (TypeError, ValueError):
        value = -1
    if value != nside or value < 1 or value > MAX_NSIDE or value & (value - 1):
        raise InputError(f"`nside` {nside!r}: must be a power of two from 1 to {MAX_NSIDE}")
    return value


def count_rows(bricks, pixels, obiwan_mask, targets_mask, npix):
    """Counts of rows per ``(brick, pixel)`` key.

    Parameters
    ----------
    bricks, pixels : integer arrays (N,)
        Each row's brick index (in the file's brick order) and HEALPix pixel.
    obiwan_mask, targets_mask : integer arrays (N,)
    npix : int
        Pixels of the sky at the map's resolution; a key is ``brick * npix + pixel``.

    Returns
    -------
    keys : int64 array (K,)
        Sorted, unique.
    counts : int64 array (K, len(COUNTS))
    """
    keys = np.asarray(bricks, np.int64) * np.int64(npix) + np.asarray(pixels, np.int64)
    unique, inverse = np.unique(keys, return_inverse=True)
    counts = np.empty((len(unique), len(COUNTS)), np.int64)
    counts[:, 0] = np.bincount(inverse, minlength=len(unique))
    recovered = is_recovered(obiwan_mask)
    counts[:, 1] = np.bincount(inverse[recovered], minlength=len(unique))
    targets = np.asarray(targets_mask)
    for sel in SELECTIONS:
        true = is_selected(targets, sel, true=True)
        meas = is_selected(targets, sel)
        for kind, chosen in (("true", true), ("meas", meas), ("both", true & meas)):
            counts[:, _COUNT_INDEX[f"n_{kind}_{sel}"]] = np.bincount(inverse[chosen], minlength=len(unique))
    return unique, counts


def merge_counts(partials):
    """One ``(keys, counts)`` from several partial ones (of batches, of ranks), counts of
    equal keys added; keys sorted, unique."""
    partials = [(keys, counts) for keys, counts in partials if len(keys)]
    if not partials:
        return np.zeros(0, np.int64), np.zeros((0, len(COUNTS)), np.int64)
    if len(partials) == 1 and np.all(partials[0][0][1:] > partials[0][0][:-1]):
        return partials[0]
    keys = np.concatenate([keys for keys, _ in partials])
    counts = np.concatenate([counts for _, counts in partials])
    order = np.argsort(keys, kind="stable")
    keys, counts = keys[order], counts[order]
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    return keys[starts], np.add.reduceat(counts, starts, axis=0)


class PixelCounts:
    """Counts per ``(brick, pixel)`` gathered batch by batch, merged now and then.

    Memory follows the distinct keys (the pixels each brick's rows fall in), not the rows:
    pending batch counts are merged once they hold as many keys as the merged counts do
    (and at least `min_pending`), which keeps the merging cost linear overall.
    """

    def __init__(self, npix, min_pending=1 << 16):
        self.npix = int(npix)
        self.min_pending = int(min_pending)
        self.keys, self.counts = merge_counts([])
        self.pending, self.pending_keys = [], 0

    def add(self, bricks, pixels, obiwan_mask, targets_mask):
        """Count one batch of rows (see `count_rows`)."""
        keys, counts = count_rows(bricks, pixels, obiwan_mask, targets_mask, self.npix)
        self.pending.append((keys, counts))
        self.pending_keys += len(keys)
        if self.pending_keys >= max(self.min_pending, len(self.keys)):
            self._merge()

    def _merge(self):
        self.keys, self.counts = merge_counts([(self.keys, self.counts)] + self.pending)
        self.pending, self.pending_keys = [], 0

    def result(self):
        """``(keys, counts)``, merged and sorted."""
        self._merge()
        return self.keys, self.counts

    def degrade(self, factor):
        """Counts of NESTED pixels `factor` (a power of two) times coarser; only for counts
        of one brick (brick 0), whose keys are the pixels themselves."""
        self._merge()
        self.keys, self.counts = degrade_nest(self.keys, self.counts, factor)
        self.npix //= int(factor) ** 2


def degrade_nest(pixels, counts, factor):
    """Counts per NESTED pixel at a resolution `factor` (a power of two) times coarser.

    A NESTED pixel's parent ``factor`` times coarser is ``pixel // factor**2``, so counts
    add up exactly. Returns ``(pixels, counts)`` with the pixels sorted and unique.
    """
    parents = np.asarray(pixels, np.int64) // (int(factor) ** 2)
    return merge_counts([(parents, np.asarray(counts, np.int64))])


def _fraction(numerator, denominator):
    """numerator / denominator, NaN where the denominator is 0 (without a warning)."""
    numerator = np.asarray(numerator, np.float64)
    denominator = np.asarray(denominator, np.float64)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _binomial_error(fraction, n):
    with np.errstate(invalid="ignore"):
        return np.sqrt(fraction * (1.0 - fraction) / np.where(n > 0, n, np.nan))


def fractions(counts):
    """The fractions of a map from its count columns (a dict name -> array).

    Returns
    -------
    dict
        ``frac_recovered``, ``frac_recovered_err`` and, per selection, ``selfunc_<sel>``,
        ``selfunc_err_<sel>``, ``completeness_<sel>``, ``contamination_<sel>``.
    """
    n = np.asarray(counts["n_inj"])
    out = {"frac_recovered": _fraction(counts["n_rec"], n)}
    out["frac_recovered_err"] = _binomial_error(out["frac_recovered"], n)
    for sel in SELECTIONS:
        meas, both = np.asarray(counts[f"n_meas_{sel}"]), np.asarray(counts[f"n_both_{sel}"])
        out[f"selfunc_{sel}"] = _fraction(meas, n)
        out[f"selfunc_err_{sel}"] = _binomial_error(out[f"selfunc_{sel}"], n)
        out[f"completeness_{sel}"] = _fraction(both, counts[f"n_true_{sel}"])
        out[f"contamination_{sel}"] = _fraction(meas - both, meas)
    return out


def pixel_table(keys, counts, npix, brick_values):
    """The map: one row per pixel that holds injected sources, every `MAP_COLUMNS` column.

    Parameters
    ----------
    keys, counts
        Merged counts per ``(brick, pixel)`` key (`merge_counts`).
    npix : int
    brick_values : dict
        Summary column name (of `IMAGING`) -> values per brick of the file (brick order);
        a column absent from the dict gives NaN.

    Returns
    -------
    pixels : int64 array (P,)
        Sorted.
    columns : dict
        Name -> array (P,), in `MAP_COLUMNS` order.
    """
    keys = np.asarray(keys, np.int64)
    bricks, pixels = np.divmod(keys, np.int64(npix))
    order = np.lexsort((bricks, pixels))  # pixel, then brick: one fixed order of the sums
    bricks, pixels, counts = bricks[order], pixels[order], np.asarray(counts, np.int64)[order]
    if len(pixels):
        starts = np.flatnonzero(np.concatenate([[True], pixels[1:] != pixels[:-1]]))
        totals = np.add.reduceat(counts, starts, axis=0)
    else:
        starts, totals = np.zeros(0, np.int64), np.zeros((0, len(COUNTS)), np.int64)
    columns = {name: totals[:, i] for i, name in enumerate(COUNTS)}
    columns.update(fractions(columns))
    injected = counts[:, 0].astype(np.float64)
    for name in IMAGING:
        if name not in brick_values or not len(pixels):
            columns[name] = np.full(len(starts), np.nan)
            continue
        values = np.asarray(brick_values[name], np.float64)[bricks]
        known = np.isfinite(values)
        weights = np.where(known, injected, 0.0)
        columns[name] = _fraction(np.add.reduceat(weights * np.where(known, values, 0.0), starts),
                                  np.add.reduceat(weights, starts))
    columns["n_bricks"] = np.diff(np.append(starts, len(pixels))).astype(np.int64)
    return pixels[starts], {name: columns[name] for name in MAP_COLUMNS}
