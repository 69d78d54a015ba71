"""The Legacy Survey brick grid (0.25° bricks), as in ``survey-bricks.fits``.

Bricks form rows of constant declination like a brick wall. Row ``r`` is centred on
``dec = -90 + 0.25 r`` (721 rows, the poles are single round bricks). A row holds an even
number of bricks, the smallest such that no brick is wider than 0.25° at the row's edge
nearer the equator, and its bricks split 0..360° in RA evenly. ``brickid`` counts bricks
from 1 at the south pole, row by row and column by column; ``brickq`` is the processing
"quadrant" ``(col % 2) + 2 (row % 2)``. This reproduces the real ``survey-bricks`` rows
(e.g. 1741p242: brickid 466768, row 457, col 636; 662174 bricks in all), following the
DESI ``desiutil.brick`` description of the same grid.
"""

# Why not desiutil.brick.Bricks? Measured (desiutil 4.0.1, bricksize 0.25, every brick of
# the sky): the two grids agree on all 662,174 bricks: the same 721 rows and bricks per
# row, names, brickid, brickq, dec, ra1, dec1 and dec2 exactly; ra and ra2 within 5.7e-14
# deg (the centre is computed as (col + 0.5) * width here, as the mean of two edges
# there); and the brick containing each of 2,000,000 random points is the same. It is
# kept all the same because desiutil would add a dependency on astropy, requests and
# PyYAML to `core`, which stays pure numpy (docs/architecture.md); building its grid takes
# seconds (it formats all 662,174 names in Python) where this one is computed per brick;
# and it offers neither the lookup by brick name nor the survey-bricks rows (brick_table)
# that `simulate` needs, which would remain here anyway.

import numpy as np

from ..errors import InputError
from ..fileformat import check_brickname

__all__ = [
    "BRICKSIZE",
    "NROWS",
    "SURVEY_BRICKS_DTYPE",
    "brick_table",
    "bricknames",
    "containing_brick",
    "lookup",
    "ncols",
    "sample_footprint",
]

BRICKSIZE = 0.25
NROWS = int(round(180 / BRICKSIZE)) + 1

SURVEY_BRICKS_DTYPE = np.dtype([
    ("brickname", "S8"), ("brickid", "i4"), ("brickq", "i2"), ("brickrow", "i4"),
    ("brickcol", "i4"), ("ra", "f8"), ("dec", "f8"), ("ra1", "f8"), ("ra2", "f8"),
    ("dec1", "f8"), ("dec2", "f8"),
])


def _build_ncols():
    dec = -90.0 + BRICKSIZE * np.arange(NROWS)
    # the row edge nearer the equator is the widest, so it sets the count
    declo = np.abs(dec) - BRICKSIZE / 2
    n = 360.0 / BRICKSIZE * np.cos(np.radians(declo))
    ncol = (np.ceil(n / 2) * 2).astype(np.int64)
    ncol[0] = ncol[-1] = 1
    return ncol


_NCOLS = _build_ncols()
_FIRST_ID = np.concatenate([[0], np.cumsum(_NCOLS)])  # bricks before each row
_ROW_DEC = -90.0 + BRICKSIZE * np.arange(NROWS)


def ncols(row=None):
    """Number of bricks in a row (or the array over all 721 rows when `row` is None)."""
    return _NCOLS.copy() if row is None else _NCOLS[row]


def _ra_code(ra):
    # round at 1e-4 deg before truncating to 0.1 deg, so that a centre such as
    # 39.599999999 is named 0396 rather than 0395
    return (np.round(np.asarray(ra, dtype=np.float64) * 1e4) // 1000).astype(np.int64)


def bricknames(ra, dec):
    """Brick names for brick centres ``ra``, ``dec`` (degrees), e.g. ``"1741p242"``.

    Parameters
    ----------
    ra, dec : array_like
        Brick centres in degrees.

    Returns
    -------
    numpy.ndarray of str
    """
    ra = np.atleast_1d(ra)
    dec = np.atleast_1d(dec)
    racode = _ra_code(ra)
    deccode = _ra_code(np.abs(dec))
    sign = np.where(dec >= 0, "p", "m")
    return np.array([f"{a:04d}{s}{d:03d}" for a, s, d in zip(racode, sign, deccode)])


def brick_table(rows, cols):
    """Rows of ``survey-bricks.fits`` for the bricks at grid positions ``(rows, cols)``.

    Parameters
    ----------
    rows, cols : array_like of int
        Brick row (0 = south pole) and column within the row.

    Returns
    -------
    numpy.ndarray
        Structured array with dtype `SURVEY_BRICKS_DTYPE` (the real file's columns).
    """
    rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
    cols = np.atleast_1d(np.asarray(cols, dtype=np.int64))
    n = _NCOLS[rows]
    if np.any((rows < 0) | (rows >= NROWS)) or np.any((cols < 0) | (cols >= n)):
        raise ValueError("brick row/column outside the grid")
    width = 360.0 / n
    out = np.zeros(len(rows), dtype=SURVEY_BRICKS_DTYPE)
    out["ra"] = (cols + 0.5) * width
    out["ra1"] = cols * width
    out["ra2"] = (cols + 1) * width
    out["dec"] = _ROW_DEC[rows]
    out["dec1"] = np.clip(_ROW_DEC[rows] - BRICKSIZE / 2, -90, 90)
    out["dec2"] = np.clip(_ROW_DEC[rows] + BRICKSIZE / 2, -90, 90)
    poles = n == 1
    out["ra"][poles] = 180.0
    out["brickname"] = bricknames(out["ra"], out["dec"]).astype("S8")
    out["brickid"] = _FIRST_ID[rows] + cols + 1
    out["brickq"] = np.where(rows == 0, 1, cols % 2 + 2 * (rows % 2))
    out["brickrow"] = rows
    out["brickcol"] = cols
    return out


def containing_brick(ra, dec):
    """Row and column of the brick containing each ``(ra, dec)`` (degrees)."""
    ra = np.atleast_1d(ra) % 360.0
    dec = np.atleast_1d(dec)
    row = np.clip(((dec + 90.0 + BRICKSIZE / 2) / BRICKSIZE).astype(np.int64), 0, NROWS - 1)
    col = np.minimum((ra / 360.0 * _NCOLS[row]).astype(np.int64), _NCOLS[row] - 1)
    return row, col


def lookup(names):
    """Grid rows of ``survey-bricks`` for brick names.

    Parameters
    ----------
    names : iterable of str
        Brick names; each must match ``^\\d{4}[pm]\\d{3}$`` and lie on the grid.

    Returns
    -------
    numpy.ndarray
        Structured array (`SURVEY_BRICKS_DTYPE`), one row per name, in the given order.

    Raises
    ------
    InputError
        For a malformed name or one that names no brick of the grid (e.g. ``0001p000``).
    """
    rows, cols = [], []
    for name in names:
        check_brickname(name)
        racode = int(name[:4])
        deccode = int(name[5:8]) * (1 if name[4] == "p" else -1)
        found = None
        # a 0.1° name window holds at most one row centre (rows are 0.25° apart)
        dec_lo = deccode / 10.0
        for row in range(max(0, int((dec_lo + 89.5) / BRICKSIZE)), min(NROWS, int((dec_lo + 90.6) / BRICKSIZE) + 1)):
            dec_c = _ROW_DEC[row]
            if _ra_code(abs(dec_c)) != abs(deccode) or (dec_c >= 0) != (name[4] == "p"):
                continue
            n = _NCOLS[row]
            guess = int((racode / 10.0) / (360.0 / n))
            for col in range(max(0, guess - 1), min(n, guess + 2)):
                ra_c = 180.0 if n == 1 else (col + 0.5) * 360.0 / n
                if _ra_code(ra_c) == racode:
                    found = (row, col)
                    break
            if found:
                break
        if found is None:
            raise InputError(f"{name!r} is not a brick of the Legacy Survey 0.25 deg grid")
        rows.append(found[0])
        cols.append(found[1])
    return brick_table(rows, cols)


# Survey-like regions (RA range, Dec range) in degrees: the DECaLS NGC and SGC caps near the
# equator, where real obiwan ELG productions were run.
_REGIONS = (((120.0, 250.0), (-4.0, 30.0)), ((315.0, 395.0), (-4.0, 30.0)))
_PATCH = 256  # bricks per contiguous patch (about 4° x 4°)


def sample_footprint(nbricks, seed):
    """Choose `nbricks` distinct bricks in contiguous patches of a realistic footprint.

    Patches of up to 256 bricks (square-ish blocks of adjacent bricks in adjacent rows)
    are centred at random in the DECaLS-like NGC/SGC regions at Dec -4..30°.

    Parameters
    ----------
    nbricks : int
        Number of bricks (>= 1).
    seed : int
        Seed; the same seed gives the same bricks.

    Returns
    -------
    numpy.ndarray
        `SURVEY_BRICKS_DTYPE` rows sorted by brick name.
    """
    rng = np.random.default_rng([seed, 0x5EB1C])
    chosen = {}
    while len(chosen) < nbricks:
        want = min(_PATCH, nbricks - len(chosen))
        width = int(np.ceil(np.sqrt(want)))
        (ra_lo, ra_hi), (dec_lo, dec_hi) = _REGIONS[0 if rng.random() < 0.6 else 1]
        ra0 = rng.uniform(ra_lo, ra_hi) % 360.0
        row = containing_brick(ra0, rng.uniform(dec_lo, dec_hi))[0][0]
        got = 0
        while got < want and row < NROWS - 1:
            n = _NCOLS[row]
            start = int(ra0 / 360.0 * n) - width // 2
            for col in (start + np.arange(width)) % n:
                if got == want:
                    break
                if (row, col) not in chosen:
                    chosen[(row, col)] = True
                    got += 1
            row += 1
    rows, cols = zip(*chosen)
    table = brick_table(rows, cols)
    return table[np.argsort(table["brickname"], kind="stable")]
