"""ELG target selections applied to injected (true) and Tractor-measured fluxes.

Every function here is pure: it takes numpy arrays and returns boolean (or uint8)
arrays of the same shape, with no IO and no global state, so that each MPI rank can
apply it to one brick at a time.

All fluxes are in nanomaggies and *de-extincted* (``flux / mw_transmission``); the
AB magnitude of a flux ``f`` is ``22.5 - 2.5 log10(f)``. A row whose g, r or z flux is
non-positive, NaN or infinite is never selected, and no numpy floating-point warning
is emitted for it: an obiwan brick has many unmatched rows (NaN measured fluxes) and
faint injected sources measured at negative flux, and a warning per brick would flood
the log of a job over 100,000 bricks.

The cuts are those of docs/concepts.md (`targets_mask`). Every function converts its inputs to
float64 and compares there: the stored float32 values are exact in float64, so a source
exactly at a cut gets the same answer whatever dtype the caller passes (NumPy 2 would
otherwise compare a float32 array with a cut rounded to float32: float32(62.79716079) is
above the eBOSS g depth limit, yet ``np.float32(62.79716079) > 62.79716079`` is False).
The de-extincted fluxes are divided in float64 too (`photometry.deextincted_flux`,
`photometry.true_flux`). Storage dtypes are unchanged.
"""

from __future__ import annotations

import copy

import numpy as np

from ..fileformat import BANDS, TARGET_BITS, bitmask, target_bit

__all__ = [
    "EBOSS_DEPTH_MIN",
    "EBOSS_REGIONS",
    "MAGNITUDE_LIMITS",
    "SELECTION_DEFINITIONS",
    "TARGET_BITS",
    "desi_elg",
    "eboss_elg",
    "eboss_quality",
    "flux_to_mag",
    "selection_definitions",
    "targets_mask",
]

EBOSS_REGIONS = ("ngc", "sgc")

# Minimum PSF-depth inverse variances (1/nanomaggy^2) of the measured eBOSS selection.
EBOSS_DEPTH_MIN = {
    "ngc": {"g": 62.79716079, "r": 30.05661087, "z": 11.0},
    "sgc": {"g": 62.79716079, "r": 30.05661087, "z": 12.75},
}

# eBOSS ELG colour-magnitude box: g range and the lower rz boundary differ between caps,
# the gr limits and the upper rz boundary are shared.
_EBOSS_G_RANGE = {"ngc": (21.825, 22.9), "sgc": (21.825, 22.825)}
_EBOSS_RZ_LOW = {"ngc": (0.637, 0.399), "sgc": (0.218, 0.571)}  # slope on gr, intercept
_EBOSS_GR_LOW = (-0.068, 0.457)  # slope on rz, intercept
_EBOSS_GR_HIGH = (0.112, 0.773)
_EBOSS_RZ_HIGH = (-0.555, 1.901)

_DESI_RMAG_MAX = 23.4

# selection -> (band, brightest, faintest de-extincted AB magnitude it can select): beyond
# these every selected source is a contaminant by definition (plot's contamination curves)
MAGNITUDE_LIMITS = {"desi_elg": ("r", -np.inf, _DESI_RMAG_MAX),
                    "eboss_ngc": ("g", *_EBOSS_G_RANGE["ngc"]),
                    "eboss_sgc": ("g", *_EBOSS_G_RANGE["sgc"])}


_COMMON_NOTES = [
    "fluxes in nanomaggies, de-extincted: flux / mw_transmission",
    "magnitudes are AB: mag = 22.5 - 2.5*log10(flux)",
    "all inequalities are strict",
    "a source with a non-positive, NaN or infinite g, r or z flux is not selected",
]

_MASK_CUT_TEXT = (
    "mask_g == mask_r == mask_z == 0, where mask is anymask_<band>; allmask_<band> when "
    "the Tractor catalogs have no anymask; no mask cut when they have neither (the "
    "attribute 'mask_columns' says which was used)"
)


def _eboss_definition(region: str) -> dict:
    glo, ghi = _EBOSS_G_RANGE[region]
    a, b = _EBOSS_RZ_LOW[region]
    depth = EBOSS_DEPTH_MIN[region]
    return {
        "name": f"eBOSS ELG {region.upper()}",
        "reference": "Raichoor et al. 2017, MNRAS 471, 3955",
        "colour_magnitude_cuts": [
            f"{glo} < g < {ghi}",
            f"{_EBOSS_GR_LOW[0]}*rz + {_EBOSS_GR_LOW[1]} < gr < "
            f"{_EBOSS_GR_HIGH[0]}*rz + {_EBOSS_GR_HIGH[1]}",
            f"{a}*gr + {b} < rz < {_EBOSS_RZ_HIGH[0]}*gr + {_EBOSS_RZ_HIGH[1]}",
            "gr = g - r, rz = r - z",
        ],
        "measured_only_cuts": [
            f"psfdepth_g > {depth['g']}",
            f"psfdepth_r > {depth['r']}",
            f"psfdepth_z > {depth['z']}",
            "psfdepth in inverse-variance units (1/nanomaggy^2); NaN depth fails",
            _MASK_CUT_TEXT,
            "brick_primary",
            "source recovered (matched to a Tractor source)",
        ],
        "true_flux_cuts": "colour_magnitude_cuts only",
        "notes": list(_COMMON_NOTES),
    }


SELECTION_DEFINITIONS = {
    "eboss_ngc": _eboss_definition("ngc"),
    "eboss_sgc": _eboss_definition("sgc"),
    "desi_elg": {
        "name": "DESI ELG (Final Design Report era)",
        "reference": "DESI Collaboration 2016, arXiv:1611.00036",
        "colour_magnitude_cuts": [
            f"r < {_DESI_RMAG_MAX}",
            "0.3 < r - z < 1.6",
            "g - r < 1.15*(r - z) - 0.15",
            "g - r < 1.6 - 1.2*(r - z)",
        ],
        "flux_form": [
            "rflux > 10**((22.5 - 23.4)/2.5)",
            "zflux > rflux*10**(0.3/2.5)",
            "zflux < rflux*10**(1.6/2.5)",
            "rflux**2.15 < gflux*zflux**1.15*10**(-0.15/2.5)",
            "zflux**1.2 < gflux*rflux**0.2*10**(1.6/2.5)",
            "rflux and zflux clipped at 0 before the powers",
        ],
        "measured_only_cuts": [
            "brick_primary",
            "source recovered (matched to a Tractor source)",
        ],
        "true_flux_cuts": "flux_form only",
        "notes": list(_COMMON_NOTES),
    },
}


def selection_definitions(mask_columns: str | None) -> dict:
    """Return `SELECTION_DEFINITIONS` with the mask columns actually used filled in.

    Parameters
    ----------
    mask_columns : {"anymask", "allmask", None}
        Which Tractor mask columns fed the eBOSS mask cut; None when the catalogs had
        neither and so no mask cut was applied.

    Returns
    -------
    dict
        A deep copy of `SELECTION_DEFINITIONS`, JSON-serialisable, with a
        ``mask_columns`` entry in each eBOSS selection.
    """
    if mask_columns not in ("anymask", "allmask", None):
        raise ValueError(f"mask_columns must be 'anymask', 'allmask' or None, got {mask_columns!r}")
    out = copy.deepcopy(SELECTION_DEFINITIONS)
    used = (
        f"{mask_columns}_g/r/z == 0" if mask_columns is not None
        else "none: the Tractor catalogs have neither anymask nor allmask, no mask cut applied"
    )
    for name in ("eboss_ngc", "eboss_sgc"):
        out[name]["mask_columns"] = used
    return out


def _as_float(a) -> np.ndarray:
    # float64 also converts the big-endian arrays that FITS readers return
    return np.asarray(a, dtype=np.float64)


def _valid_fluxes(*fluxes: np.ndarray) -> np.ndarray:
    """True where every flux is finite and strictly positive."""
    ok = np.ones(np.broadcast_shapes(*(f.shape for f in fluxes)), dtype=bool)
    for f in fluxes:
        # NaN compares False without a warning, so `f > 0` already rejects it
        ok &= np.isfinite(f) & (f > 0)
    return ok


def _and_primary(sel: np.ndarray, primary) -> np.ndarray:
    if primary is None:
        return sel
    return sel & np.asarray(primary, dtype=bool)


def flux_to_mag(flux) -> np.ndarray:
    """Convert nanomaggies to AB magnitudes, ``22.5 - 2.5 log10(flux)``.

    Parameters
    ----------
    flux : array_like
        Fluxes in nanomaggies.

    Returns
    -------
    numpy.ndarray
        float64 magnitudes of the same shape; NaN where the flux is non-positive, NaN or
        infinite. No floating-point warning is emitted.
    """
    flux = _as_float(flux)
    good = np.isfinite(flux) & (flux > 0)
    mag = np.full(flux.shape, np.nan)
    mag[good] = 22.5 - 2.5 * np.log10(flux[good])
    return mag


def desi_elg(gflux, rflux, zflux, primary=None) -> np.ndarray:
    """DESI ELG selection (Final Design Report era) in its flux form (docs/concepts.md).

    Parameters
    ----------
    gflux, rflux, zflux : array_like
        De-extincted fluxes in nanomaggies, all of one shape.
    primary : array_like of bool, optional
        ``brick_primary``; when given, rows where it is False are rejected.

    Returns
    -------
    numpy.ndarray of bool
        True where the source passes ``r < 23.4``, ``0.3 < r-z < 1.6``,
        ``g-r < 1.15(r-z) - 0.15`` and ``g-r < 1.6 - 1.2(r-z)`` (and primary).

    Notes
    -----
    Rows with any non-finite or non-positive flux are rejected. The flux form alone
    already rejects non-positive fluxes, but would accept an infinite g flux.
    """
    g, r, z = _as_float(gflux), _as_float(rflux), _as_float(zflux)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore", under="ignore"):
        rc = np.clip(r, 0.0, None)
        zc = np.clip(z, 0.0, None)
        sel = rc > 10 ** ((22.5 - _DESI_RMAG_MAX) / 2.5)
        sel &= zc > rc * 10 ** (0.3 / 2.5)
        sel &= zc < rc * 10 ** (1.6 / 2.5)
        sel &= rc ** 2.15 < g * zc ** 1.15 * 10 ** (-0.15 / 2.5)
        sel &= zc ** 1.2 < g * rc ** 0.2 * 10 ** (1.6 / 2.5)
    sel &= _valid_fluxes(g, r, z)
    return _and_primary(sel, primary)


def _check_region(region: str) -> str:
    key = str(region).lower()
    if key not in EBOSS_REGIONS:
        raise ValueError(f"region must be 'ngc' or 'sgc', got {region!r}")
    return key


def eboss_elg(gflux, rflux, zflux, region: str) -> np.ndarray:
    """eBOSS ELG colour-magnitude selection (Raichoor et al. 2017).

    Parameters
    ----------
    gflux, rflux, zflux : array_like
        De-extincted fluxes in nanomaggies, all of one shape.
    region : {"ngc", "sgc"}
        Galactic cap whose cuts are applied (case-insensitive).

    Returns
    -------
    numpy.ndarray of bool
        True where the source lies inside the colour-magnitude box. Only the
        photometric cuts; the measured-only cuts are in `eboss_quality`.
    """
    region = _check_region(region)
    g = flux_to_mag(gflux)
    r = flux_to_mag(rflux)
    z = flux_to_mag(zflux)
    gr = g - r
    rz = r - z
    glo, ghi = _EBOSS_G_RANGE[region]
    a, b = _EBOSS_RZ_LOW[region]
    # NaN magnitudes (invalid fluxes) fail every comparison silently
    sel = (g > glo) & (g < ghi)
    sel &= gr > _EBOSS_GR_LOW[0] * rz + _EBOSS_GR_LOW[1]
    sel &= gr < _EBOSS_GR_HIGH[0] * rz + _EBOSS_GR_HIGH[1]
    sel &= rz > a * gr + b
    sel &= rz < _EBOSS_RZ_HIGH[0] * gr + _EBOSS_RZ_HIGH[1]
    return sel


def eboss_quality(region: str, psfdepth_g, psfdepth_r, psfdepth_z,
                  mask_g=None, mask_r=None, mask_z=None, primary=None) -> np.ndarray:
    """Measured-only cuts of the eBOSS ELG selection: depth, mask and primary.

    Parameters
    ----------
    region : {"ngc", "sgc"}
        Galactic cap; the z-band depth limit differs (11.0 NGC, 12.75 SGC).
    psfdepth_g, psfdepth_r, psfdepth_z : array_like
        PSF-depth inverse variances (1/nanomaggy^2). NaN fails.
    mask_g, mask_r, mask_z : array_like of int, optional
        Tractor ``anymask`` (or ``allmask`` when anymask is absent) per band; the row
        passes only where all three are 0. Give all three or none; with none, no mask
        cut is applied.
    primary : array_like of bool, optional
        ``brick_primary``; when given, rows where it is False are rejected.

    Returns
    -------
    numpy.ndarray of bool

    Raises
    ------
    ValueError
        If only some of the three masks are given, or the region is unknown.
    """
    region = _check_region(region)
    limits = EBOSS_DEPTH_MIN[region]
    sel = _as_float(psfdepth_g) > limits["g"]
    sel = sel & (_as_float(psfdepth_r) > limits["r"])
    sel = sel & (_as_float(psfdepth_z) > limits["z"])
    masks = (mask_g, mask_r, mask_z)
    n_given = sum(m is not None for m in masks)
    if n_given not in (0, 3):
        # a partial mask cut would silently select differently from the definition
        raise ValueError("give all three of mask_g, mask_r, mask_z or none of them")
    if n_given == 3:
        for m in masks:
            sel = sel & (np.asarray(m) == 0)
    return _and_primary(sel, primary)


def _bands(d, what: str) -> tuple:
    try:
        return tuple(d[b] for b in BANDS)
    except (KeyError, TypeError) as err:
        raise ValueError(f"{what} must be a mapping with keys 'g', 'r', 'z'") from err


def targets_mask(true_flux, measured_flux, matched, psfdepth, mask=None,
                 primary=None) -> np.ndarray:
    """Combine all selections into the ``targets_mask`` bitmask (docs/concepts.md).

    Parameters
    ----------
    true_flux : mapping
        ``{"g", "r", "z"}`` -> de-extincted injected fluxes (nanomaggies).
    measured_flux : mapping
        ``{"g", "r", "z"}`` -> de-extincted Tractor fluxes of the match (NaN where
        unmatched).
    matched : array_like of bool
        Whether the injected source was recovered. Measured bits are never set where
        this is False, whatever the measured columns hold.
    psfdepth : mapping
        ``{"g", "r", "z"}`` -> Tractor PSF-depth inverse variances of the match.
    mask : mapping or None, optional
        ``{"g", "r", "z"}`` -> Tractor anymask (or allmask) of the match; None for no
        mask cut.
    primary : array_like of bool, optional
        ``brick_primary`` of the match; None for no primary cut.

    Returns
    -------
    numpy.ndarray of uint8
        Bit ``TARGET_BITS[name]`` set where selection ``name`` passes; see
        `fileformat.TARGET_MASK_BITS`. True-flux bits use only the colour-magnitude cuts.
    """
    tg, tr, tz = _bands(true_flux, "true_flux")
    mg, mr, mz = _bands(measured_flux, "measured_flux")
    dg, dr, dz = _bands(psfdepth, "psfdepth")
    mask_args = (None, None, None) if mask is None else _bands(mask, "mask")
    matched = np.asarray(matched, dtype=bool)

    flags = {
        target_bit("desi_elg"): desi_elg(mg, mr, mz, primary=primary) & matched,
        target_bit("desi_elg", true=True): desi_elg(tg, tr, tz),
    }
    for region in EBOSS_REGIONS:
        quality = eboss_quality(region, dg, dr, dz, *mask_args, primary=primary)
        flags[target_bit(f"eboss_{region}")] = eboss_elg(mg, mr, mz, region) & quality & matched
        flags[target_bit(f"eboss_{region}", true=True)] = eboss_elg(tg, tr, tz, region)
    return bitmask(flags)  # the measured flags, ``& matched``, have the shape of `matched` too
