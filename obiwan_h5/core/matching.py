"""Nearest-neighbour matching on the sphere.

Used to pair every injected source with the Tractor source that measured it, and to
flag randoms that landed on a real galaxy of the data release. Pure functions on numpy
arrays of coordinates in degrees; no IO.

Positions are turned into 3-D unit vectors, where the great-circle angle ``theta`` and
the Euclidean chord ``c`` are related monotonically by ``c = 2 sin(theta / 2)``, so the
nearest chord is the nearest neighbour on the sphere, with no special case at RA = 0/360
or at the poles. Candidates come from a sweep in declination (every source within the
radius lies within it in dec): a brick's few hundred sources are matched in a handful of
vectorised numpy operations, without the set-up cost of a k-d tree per call.
"""

from __future__ import annotations

import numpy as np

__all__ = ["has_neighbour", "match_nearest", "radec_to_unit"]

_ARCSEC_PER_RAD = 180.0 / np.pi * 3600.0
# candidate pairs held at once by `match_nearest` (about 15 MB of work arrays: the job
# matches a whole write round in one call, beside the round's buffers)
MAX_PAIRS = 1 << 18


def _coords(ra, dec, which: str) -> tuple[np.ndarray, np.ndarray]:
    # float64 also converts the big-endian arrays that FITS readers return, which
    # cKDTree would otherwise reject
    ra = np.atleast_1d(np.asarray(ra, dtype=np.float64))
    dec = np.atleast_1d(np.asarray(dec, dtype=np.float64))
    if ra.ndim != 1 or ra.shape != dec.shape:
        raise ValueError(
            f"ra{which} and dec{which} must be 1-D arrays of one length, "
            f"got shapes {ra.shape} and {dec.shape}")
    return ra, dec


def radec_to_unit(ra_deg, dec_deg) -> np.ndarray:
    """Convert equatorial coordinates to Cartesian unit vectors.

    Parameters
    ----------
    ra_deg, dec_deg : array_like
        Right ascension and declination in degrees, 1-D and of one length.

    Returns
    -------
    numpy.ndarray
        float64 array of shape (N, 3); rows with a NaN coordinate are NaN.
    """
    ra, dec = _coords(ra_deg, dec_deg, "")
    ra = np.deg2rad(ra)
    dec = np.deg2rad(dec)
    cos_dec = np.cos(dec)
    return np.stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)], axis=-1)


def match_nearest(ra1, dec1, ra2, dec2, radius_arcsec: float, group1=None, group2=None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Find, for every source of catalog 1, its nearest source of catalog 2.

    Parameters
    ----------
    ra1, dec1 : array_like
        Catalog 1 (e.g. injected sources), degrees, 1-D.
    ra2, dec2 : array_like
        Catalog 2 (e.g. Tractor sources), degrees, 1-D.
    radius_arcsec : float
        Match radius in arcsec; a source of catalog 2 at exactly this separation
        still matches.
    group1, group2 : array_like of int, optional
        Non-negative group of each source (e.g. the rsdir it belongs to): a source of
        catalog 1 is matched only to sources of catalog 2 of its own group. Matching many
        groups in one call gives, group for group, what one call per group gives, without
        the fixed cost of a call per group.

    Returns
    -------
    index : numpy.ndarray of int64, shape (N1,)
        Index into catalog 2 of the nearest source within the radius, -1 when there
        is none. Several sources of catalog 1 may share one source of catalog 2.
    separation_arcsec : numpy.ndarray of float64, shape (N1,)
        Great-circle separation of that match in arcsec, NaN when there is none.

    Notes
    -----
    Sources of catalog 2 with a non-finite coordinate are never matched; sources of
    catalog 1 with a non-finite coordinate match nothing. When two sources of catalog 2
    are equally near, the one of lowest index is returned.
    """
    ra1, dec1 = _coords(ra1, dec1, "1")
    ra2, dec2 = _coords(ra2, dec2, "2")
    radius_arcsec = float(radius_arcsec)
    if not (np.isfinite(radius_arcsec) and radius_arcsec > 0):
        raise ValueError(f"radius_arcsec must be finite and positive, got {radius_arcsec!r}")
    if (group1 is None) != (group2 is None):
        raise ValueError("give both group1 and group2, or neither")

    index = np.full(ra1.shape, -1, dtype=np.int64)
    separation = np.full(ra1.shape, np.nan, dtype=np.float64)

    good1 = np.flatnonzero(np.isfinite(ra1) & np.isfinite(dec1))
    good2 = np.flatnonzero(np.isfinite(ra2) & np.isfinite(dec2))
    if good1.size == 0 or good2.size == 0:
        return index, separation

    radius_deg = radius_arcsec / 3600.0
    chord = 2.0 * np.sin(min(np.deg2rad(radius_deg), np.pi) / 2.0)
    # sort and sweep in dec: every source within the radius has |ddec| <= radius, so the
    # window [dec - r, dec + r] of the dec-sorted catalog 2 holds every candidate, at the
    # poles and across RA = 0/360 too; the exact distance is the chord of unit vectors.
    key1, key2, margin = _sweep_keys(dec1[good1], dec2[good2], group1, group2, good1, good2)
    sort = np.argsort(key2, kind="stable")
    order, sorted_key = good2[sort], key2[sort]
    # half-width in dec of a source's candidates, widened by a hair like the chord bound below:
    # a source due north or south whose computed angle is exactly the radius may lie a rounding
    # error beyond it in dec
    window = radius_deg * (1.0 + 1e-9) + 1e-12
    lo = np.searchsorted(sorted_key, key1 - window - margin, side="left")
    hi = np.searchsorted(sorted_key, key1 + window + margin, side="right")
    counts = hi - lo
    # unit vectors of each source, or of each candidate pair when there are fewer pairs
    # than sources (a sparse catalog 1 against a dense one: the real sources of a brick)
    pairs = int(counts.sum())
    units1 = radec_to_unit(ra1[good1], dec1[good1]) if pairs >= len(good1) else None
    units2 = radec_to_unit(ra2[order], dec2[order]) if pairs >= len(order) else None
    # bounded memory however dense the catalogs: pairs are built in chunks of sources
    bounds = _chunks(counts, MAX_PAIRS)
    best = np.full(len(good1), -1, dtype=np.int64)  # index into catalog 2
    best_chord = np.full(len(good1), np.inf)
    for start, stop in bounds:
        n = counts[start:stop]
        total = int(n.sum())
        if total == 0:
            continue
        source = np.repeat(np.arange(start, stop), n)
        # candidate k of source i is sorted row lo[i] + k
        offsets = np.arange(total) - np.repeat(np.cumsum(n) - n, n)
        candidate = np.repeat(lo[start:stop], n) + offsets
        if margin:
            # the windows of the grouped keys were widened for their rounding: keep exactly
            # the candidates of the source's group and dec window (what a call per group takes)
            own = dec2[order[candidate]]
            dec_source = dec1[good1][source]
            inside = (own >= dec_source - window) & (own <= dec_source + window)
            inside &= np.asarray(group2)[order[candidate]] == np.asarray(group1)[good1[source]]
            source, candidate = source[inside], candidate[inside]
            if len(source) == 0:
                continue
        first = units1[source] if units1 is not None else radec_to_unit(ra1[good1[source]], dec1[good1[source]])
        second = units2[candidate] if units2 is not None else \
            radec_to_unit(ra2[order[candidate]], dec2[order[candidate]])
        distance = np.sqrt(np.sum((first - second) ** 2, axis=1))
        # nearest per source, ties to the lowest index of catalog 2 (deterministic): the
        # candidates come grouped by source, so two reductions per run of one source
        runs = np.flatnonzero(np.concatenate([[True], source[1:] != source[:-1]]))
        nearest = np.minimum.reduceat(distance, runs)
        owners = source[runs]
        tied = distance == np.repeat(nearest, np.diff(np.append(runs, len(source))))
        index2 = np.where(tied, order[candidate], np.iinfo(np.int64).max)
        best[owners] = np.minimum.reduceat(index2, runs)
        best_chord[owners] = nearest
    found = best >= 0
    # the chord bound is widened by a hair so that rounding in the unit vectors never drops
    # a source at the radius; the exact angle is checked below
    found &= best_chord <= chord * (1.0 + 1e-9) + 1e-15
    angle = 2.0 * np.arcsin(np.minimum(best_chord[found] / 2.0, 1.0)) * _ARCSEC_PER_RAD
    keep = angle <= radius_arcsec
    rows = good1[found][keep]
    index[rows] = best[found][keep]
    separation[rows] = angle[keep]
    return index, separation


# groups are laid out this far apart in the sweep key: more than the whole range of dec
# plus twice any radius, so that no window reaches into another group
_GROUP_SPACING = 1024.0


def _sweep_keys(dec1, dec2, group1, group2, good1, good2):
    """Sweep keys of both catalogs (dec, or dec offset by group), and the margin the windows
    need for the rounding of the offset keys (0 without groups)."""
    if group1 is None:
        return dec1, dec2, 0.0
    group1 = np.asarray(group1)[good1].astype(np.float64)
    group2 = np.asarray(group2)[good2].astype(np.float64)
    if (len(group1) and group1.min() < 0) or (len(group2) and group2.min() < 0):
        raise ValueError("groups must be non-negative integers")
    key1 = dec1 + _GROUP_SPACING * group1
    key2 = dec2 + _GROUP_SPACING * group2
    largest = max(float(np.abs(key1).max(initial=0.0)), float(np.abs(key2).max(initial=0.0)))
    return key1, key2, 1e-9 + 16 * float(np.spacing(largest))


def _chunks(counts, limit):
    """``[(start, stop), ...]`` cutting sources into runs of at most `limit` candidate pairs
    (a single source with more is its own run)."""
    cumulative = np.cumsum(counts)
    bounds, start = [], 0
    while start < len(counts):
        base = cumulative[start - 1] if start else 0
        stop = int(np.searchsorted(cumulative, base + limit, side="right"))
        stop = max(stop, start + 1)
        bounds.append((start, stop))
        start = stop
    return bounds


def has_neighbour(ra1, dec1, ra2, dec2, radius_arcsec: float, group1=None, group2=None) -> np.ndarray:
    """Whether any source of catalog 2 lies within the radius of each source of catalog 1.

    Parameters
    ----------
    ra1, dec1 : array_like
        Catalog 1, degrees, 1-D.
    ra2, dec2 : array_like
        Catalog 2, degrees, 1-D.
    radius_arcsec : float
        Radius in arcsec (inclusive).
    group1, group2 : array_like of int, optional
        As in `match_nearest`: only sources of the same group are neighbours.

    Returns
    -------
    numpy.ndarray of bool, shape (N1,)
        Non-finite coordinates in either catalog never count as neighbours.
    """
    # some source lies within the radius exactly when the nearest one does
    index, _ = match_nearest(ra1, dec1, ra2, dec2, radius_arcsec, group1, group2)
    return index >= 0
