"""Nearest-neighbour matching on the sphere.

Used to pair every injected source with the Tractor source that measured it, and to
flag randoms that landed on a real galaxy of the data release. Pure functions on numpy
arrays of coordinates in degrees; no IO.

Positions are turned into 3-D unit vectors, where the great-circle angle ``theta`` and
the Euclidean chord ``c`` are related monotonically by ``c = 2 sin(theta / 2)``. A k-d
tree on the unit vectors therefore finds the nearest neighbour on the sphere exactly,
with no special case at RA = 0/360 or at the poles.
"""

from __future__ import annotations

import numpy as np

__all__ = ["has_neighbour", "match_nearest", "radec_to_unit"]

_ARCSEC_PER_RAD = 180.0 / np.pi * 3600.0


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


def match_nearest(ra1, dec1, ra2, dec2, radius_arcsec: float
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
    are equally near, which one is returned is unspecified.
    """
    ra1, dec1 = _coords(ra1, dec1, "1")
    ra2, dec2 = _coords(ra2, dec2, "2")
    radius_arcsec = float(radius_arcsec)
    if not (np.isfinite(radius_arcsec) and radius_arcsec > 0):
        raise ValueError(f"radius_arcsec must be finite and positive, got {radius_arcsec!r}")

    index = np.full(ra1.shape, -1, dtype=np.int64)
    separation = np.full(ra1.shape, np.nan, dtype=np.float64)

    good1 = np.flatnonzero(np.isfinite(ra1) & np.isfinite(dec1))
    good2 = np.flatnonzero(np.isfinite(ra2) & np.isfinite(dec2))
    # cKDTree cannot be built on zero points, and NaN points would poison it
    if good1.size == 0 or good2.size == 0:
        return index, separation

    radius_rad = radius_arcsec / _ARCSEC_PER_RAD
    chord = 2.0 * np.sin(min(radius_rad, np.pi) / 2.0)
    # imported here: reading-side commands import this module but never match
    from scipy.spatial import cKDTree

    tree = cKDTree(radec_to_unit(ra2[good2], dec2[good2]))
    # The bound is widened by a hair so that rounding in the unit vectors never drops a
    # source at the radius; the exact angle is re-checked below.
    dist, j = tree.query(radec_to_unit(ra1[good1], dec1[good1]), k=1,
                         distance_upper_bound=chord * (1.0 + 1e-9) + 1e-15)
    found = np.isfinite(dist)
    angle = 2.0 * np.arcsin(np.minimum(dist[found] / 2.0, 1.0)) * _ARCSEC_PER_RAD
    keep = angle <= radius_arcsec
    rows = good1[found][keep]
    index[rows] = good2[j[found][keep]]
    separation[rows] = angle[keep]
    return index, separation


def has_neighbour(ra1, dec1, ra2, dec2, radius_arcsec: float) -> np.ndarray:
    """Whether any source of catalog 2 lies within the radius of each source of catalog 1.

    Parameters
    ----------
    ra1, dec1 : array_like
        Catalog 1, degrees, 1-D.
    ra2, dec2 : array_like
        Catalog 2, degrees, 1-D.
    radius_arcsec : float
        Radius in arcsec (inclusive).

    Returns
    -------
    numpy.ndarray of bool, shape (N1,)
        Non-finite coordinates in either catalog never count as neighbours.
    """
    # some source lies within the radius exactly when the nearest one does
    index, _ = match_nearest(ra1, dec1, ra2, dec2, radius_arcsec)
    return index >= 0
