"""Per-brick summary row (docs/concepts.md): pure functions on a brick's derived columns."""

import numpy as np

from ..fileformat import (
    BANDS,
    NEXPHIST_BINS,
    SELECTIONS,
    SUMMARY_COLUMNS,
    TRACTOR_PREFIX,
    TRACTOR_TYPES,
    fill_value,
    is_recovered,
    is_selected,
    summary_column_type,
    tractor_column,
)
from . import selection
from .derivation import measured_mask_arrays
from .photometry import TYPE_CODES, band_quantity, deextincted_flux, tractor_types, true_flux

__all__ = ["brick_area", "depth_at_half_recovered", "empty_summaries", "empty_summary", "ivar_to_depth", "nobs_histogram",
           "summarise_brick", "summarise_bricks"]

# groups of at most this many values take their medians from one sort of them all
FEW_ROWS = 128
# 20 bins of true magnitude over [18, 26] (docs/concepts.md, per-brick summary)
MAG_BINS = np.linspace(18.0, 26.0, 21)



def brick_area(ra1, ra2, dec1, dec2):
    """Area in deg² of the region ra1<ra<ra2, dec1<dec<dec2 on the sphere."""
    return (ra2 - ra1) * (np.sin(np.radians(dec2)) - np.sin(np.radians(dec1))) * np.degrees(1.0)


def ivar_to_depth(ivar):
    """5σ AB depth of a flux inverse variance (nanomaggy⁻²); NaN for non-positive/NaN."""
    ivar = np.asarray(ivar, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = -2.5 * (np.log10(5.0 / np.sqrt(ivar)) - 9.0)
    return np.where(ivar > 0, depth, np.nan)


def depth_at_half_recovered(true_mag, recovered, bins=MAG_BINS):
    """Centre of the first non-empty magnitude bin whose recovered fraction ≤ 0.5 (NaN if none).

    Bins are ``[low, high)``, the last one also holding its upper edge (as `numpy.histogram`).
    """
    true_mag = np.asarray(true_mag, dtype=np.float64)
    return _Groups([(0, len(true_mag))], len(true_mag)).depth_at_half(true_mag, np.asarray(recovered, bool), bins)[0]


def nobs_histogram(nobs, bins=NEXPHIST_BINS):
    """Counts of `nobs` values 0, 1, ..., ``bins - 2`` and ``>= bins - 1`` (negative as 0)."""
    nobs = np.clip(np.asarray(nobs, dtype=np.int64), 0, bins - 1)
    return _Groups([(0, len(nobs))], len(nobs)).histogram(nobs, np.ones(len(nobs), bool), bins)[0]


def summarise_brick(brickname, columns, bounds, nobjs):
    """The summary row of one brick.

    Parameters
    ----------
    brickname : str
    columns : dict
        The brick's derived columns (`derivation.brick_pieces`, concatenated).
    bounds : tuple
        ``(ra, dec, ra1, ra2, dec1, dec2)`` from survey-bricks.
    nobjs : int
        Tractor sources of the brick (brick_primary rows of its Tractor catalogs, summed
        over its rsdirs): the derived rows hold only the matched ones.

    Returns
    -------
    dict
        Summary column -> scalar, keys as `SUMMARY_COLUMNS`.
    """
    return summarise_bricks([brickname], columns, [(0, len(columns["unique_id"]))], [bounds], [nobjs])[0]


def summarise_bricks(bricknames, columns, ranges, bounds, nobjs):
    """The summary rows of consecutive bricks, computed together: `summarise_brick` of
    each, value for value, with grouped reductions instead of a hundred calls per brick.

    Parameters
    ----------
    bricknames : list of str
    columns : dict
        Derived columns holding the rows of all the bricks (and maybe others).
    ranges : list of (int, int)
        Brick ``i`` is rows ``[start, stop)`` of `columns`; ranges in row order, without
        overlap.
    bounds : list of tuple
        Each brick's survey-bricks ``(ra, dec, ra1, ra2, dec1, dec2)``.
    nobjs : list of int
        Each brick's Tractor sources.

    Returns
    -------
    list of dict
        One summary row per brick, as `summarise_brick` returns it.
    """
    groups = _Groups(ranges, len(columns["obiwan_mask"]))
    recovered = is_recovered(columns["obiwan_mask"])
    targets = columns["targets_mask"]
    n_rec = groups.count(recovered)
    with np.errstate(divide="ignore", invalid="ignore"):
        stats = {"n_inj": groups.sizes, "n_rec": n_rec,
                 "frac_recovered": np.where(groups.sizes > 0, n_rec / groups.sizes, np.nan)}
    for sel in SELECTIONS:
        true_bit = is_selected(targets, sel, true=True)
        stats[f"n_true_{sel}"] = groups.count(true_bit)
        stats[f"n_true_rec_meas_{sel}"] = groups.count(true_bit & recovered & is_selected(targets, sel))
    for region in selection.EBOSS_REGIONS:
        stats[f"n_true_rec_meas_eboss_{region}_allmask"] = groups.count(
            _eboss_measured(columns, region, "allmask") & recovered
            & is_selected(targets, f"eboss_{region}", true=True))
    kinds = tractor_types(columns.get(tractor_column("type"), np.zeros(groups.nrows, "S4")))
    for kind, code in zip(TRACTOR_TYPES, TYPE_CODES):
        stats[f"n_type_{kind.lower()}"] = groups.count(recovered & (kinds == code))
    for band in BANDS:
        stats[f"psfsize_{band}"] = groups.nanmedian(_quantity(columns, "psfsize", band, groups.nrows), recovered)
    ebv = columns.get(tractor_column("ebv"), np.full(groups.nrows, np.nan))
    stats["ebv"] = groups.nanmedian(np.asarray(ebv, dtype=np.float64), recovered)
    for band in BANDS:
        trans = groups.nanmedian(_quantity(columns, "mw_transmission", band, groups.nrows), recovered)
        stats[f"trans_{band}"] = trans
        with np.errstate(divide="ignore", invalid="ignore"):
            stats[f"ext_{band}"] = np.where(trans > 0, -2.5 * np.log10(trans), np.nan)
        nobs = band_quantity(columns, "nobs", band, prefix=TRACTOR_PREFIX)
        if nobs is None:
            stats[f"nexp_{band}"] = np.full(len(groups.sizes), np.nan)
            stats[f"nexphist_{band}"] = np.zeros((len(groups.sizes), NEXPHIST_BINS), np.int64)
        else:
            nobs = np.asarray(nobs)
            stats[f"nexp_{band}"] = groups.median(nobs, recovered)
            stats[f"nexphist_{band}"] = groups.histogram(np.clip(nobs.astype(np.int64), 0, NEXPHIST_BINS - 1),
                                                         recovered, NEXPHIST_BINS)
    for kind in ("psfdepth", "galdepth"):
        for band in BANDS:
            ivar = _quantity(columns, kind, band, groups.nrows)
            with np.errstate(invalid="ignore"):
                stats[f"{kind}_{band}"] = ivar_to_depth(groups.nanmedian(ivar, recovered & (ivar > 0)))
    for band in BANDS:
        stats[f"depth_at_half_recovered_{band}"] = groups.depth_at_half(
            selection.flux_to_mag(true_flux(columns, band)), recovered)
    rows = []
    for index, brickname in enumerate(bricknames):
        ra, dec, ra1, ra2, dec1, dec2 = bounds[index]
        row = {"brickname": brickname.encode(), "ra": ra, "dec": dec, "brick_area": brick_area(ra1, ra2, dec1, dec2),
               "nobjs": int(nobjs[index])}
        row.update({name: values[index] for name, values in stats.items()})
        rows.append(row)
    return rows


class _Groups:
    """Reductions per brick over the rows of each brick's range (`summarise_bricks`); rows
    in no range are left out."""

    def __init__(self, ranges, nrows):
        self.nrows = nrows
        self.group = np.full(nrows, -1, dtype=np.int64)
        bounds = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)
        if np.any(bounds[:, 1] < bounds[:, 0]) or np.any(bounds[1:, 0] < bounds[:-1, 1]) or \
                (len(bounds) and bounds[0, 0] < 0):
            raise ValueError(f"ranges must be in row order without overlap: {ranges}")
        self.sizes = bounds[:, 1] - bounds[:, 0]
        # each group's rows, from one repeat: a brick's range holds its group number
        self.group[np.repeat(bounds[:, 0] - np.cumsum(self.sizes) + self.sizes, self.sizes)
                   + np.arange(int(self.sizes.sum()))] = np.repeat(np.arange(len(bounds)), self.sizes)
        self.member = self.group >= 0

    def count(self, flags):
        return np.bincount(self.group[flags & self.member], minlength=len(self.sizes))

    def histogram(self, index, keep, nbins):
        """Counts of `index` values 0..nbins-1 over the `keep` rows of each group."""
        keep = keep & self.member
        flat = self.group[keep] * nbins + index[keep]
        return np.bincount(flat, minlength=len(self.sizes) * nbins).reshape(len(self.sizes), nbins)

    def median(self, values, keep):
        """`numpy.median` of the `keep` values of each group (NaN for none), value for value.

        A group of many rows takes one `numpy.median` (a partial sort of its slice); the
        groups of few rows (small bricks, where a call's fixed cost is most of it) are
        sorted together, by group and value, in one call.
        """
        keep = keep & self.member
        group, values = self.group[keep], values[keep]
        counts = np.bincount(group, minlength=len(self.sizes))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        result = np.full(len(self.sizes), np.nan)
        for index in np.flatnonzero(counts > FEW_ROWS):
            result[index] = _median(values[starts[index]:starts[index] + counts[index]])
        few = (counts > 0) & (counts <= FEW_ROWS)
        if few.any():
            rows = few[group]
            group, values = group[rows], values[rows].astype(np.float64)
            order = np.lexsort((values, group))
            group, values = group[order], values[order]
            chosen = np.flatnonzero(few)
            first = np.searchsorted(group, chosen)
            low, high = first + (counts[chosen] - 1) // 2, first + counts[chosen] // 2
            # as numpy.median: the middle value, or the mean of the two middle values
            middle = np.where(low == high, values[low], (values[low] + values[high]) / 2)
            # and NaN for a group holding a NaN (sorted last)
            last = first + counts[chosen] - 1
            result[chosen] = np.where(np.isnan(values[last]), np.nan, middle)
        return result

    def nanmedian(self, values, keep):
        """The median of the finite `keep` values of each group (NaN for none)."""
        return self.median(values, keep & np.isfinite(values))

    def depth_at_half(self, true_mag, recovered, bins=MAG_BINS):
        """`depth_at_half_recovered` of each group."""
        nbins = len(bins) - 1
        inside = np.isfinite(true_mag) & (true_mag >= bins[0]) & (true_mag <= bins[-1])
        # bins are [low, high) but the last also holds its upper edge, as numpy.histogram
        index = np.zeros(self.nrows, np.int64)
        index[inside] = np.minimum(np.searchsorted(bins, true_mag[inside], side="right") - 1, nbins - 1)
        total = self.histogram(index, inside, nbins)
        found = self.histogram(index, inside & recovered, nbins)
        with np.errstate(divide="ignore", invalid="ignore"):
            low = (total > 0) & (found / total <= 0.5)
        first = np.argmax(low, axis=1)
        centre = 0.5 * (bins[first] + bins[first + 1])
        return np.where(low.any(axis=1), centre, np.nan)


def _median(values):
    """`numpy.median` of a 1-D array, value for value, from one `numpy.partition` (without
    numpy.median's own set-up, which costs as much as the partition on a brick's rows)."""
    size = len(values)
    if values.dtype.kind == "f" and np.isnan(values).any():
        return np.nan
    low, high = (size - 1) // 2, size // 2
    part = np.partition(values, [low, high] if high != low else high)
    if values.dtype.kind != "f":  # numpy.median averages integers in float64
        part = part[[low, high]].astype(np.float64)
        low, high = 0, 1
    # the mean of the one or two middle values, in their own precision as numpy.mean's
    return part[low] if low == high else (part[low] + part[high]) / 2


def _quantity(columns, quantity, band, nrows):
    """A Tractor quantity as float64, NaN where the schema lacks it."""
    values = band_quantity(columns, quantity, band, prefix=TRACTOR_PREFIX)
    return np.full(nrows, np.nan) if values is None else np.asarray(values, dtype=np.float64)


def _eboss_measured(columns, region, mask_kind):
    flux = {band: deextincted_flux(columns, band, TRACTOR_PREFIX) for band in BANDS}
    if any(value is None for value in flux.values()):
        return np.zeros(len(columns["unique_id"]), bool)
    depth = {band: band_quantity(columns, "psfdepth", band, TRACTOR_PREFIX) for band in BANDS}
    if any(value is None for value in depth.values()):
        return np.zeros(len(columns["unique_id"]), bool)
    masks = measured_mask_arrays(columns, TRACTOR_PREFIX, mask_kind) or {}
    primary = columns.get(tractor_column("brick_primary"))
    return selection.eboss_elg(flux["g"], flux["r"], flux["z"], region) & selection.eboss_quality(
        region, depth["g"], depth["r"], depth["z"],
        masks.get("g"), masks.get("r"), masks.get("z"),
        primary=None if primary is None else np.asarray(primary, bool))


def empty_summary(brickname, bounds):
    """The summary row of a brick with no derived rows (incomplete or failed): counts 0,
    statistics NaN, position and area from its survey-bricks `bounds` when known."""
    return {name: values[0] for name, values in empty_summaries([brickname], [bounds]).items()}


def empty_summaries(bricknames, bounds):
    """`empty_summary` of several bricks, as summary columns (one value per brick)."""
    columns = {}
    for name in SUMMARY_COLUMNS:
        dtype, shape = summary_column_type(name)
        columns[name] = np.full((len(bricknames),) + tuple(shape), fill_value(dtype) if dtype.kind != "i" else 0, dtype)
    columns["brickname"][:] = [name.encode() for name in bricknames]
    for index, known in enumerate(bounds):
        if known is not None:
            ra, dec, ra1, ra2, dec1, dec2 = known
            columns["ra"][index], columns["dec"][index] = ra, dec
            columns["brick_area"][index] = brick_area(ra1, ra2, dec1, dec2)
    return columns
