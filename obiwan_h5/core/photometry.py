"""Per-band Tractor quantities for both catalog schemas — the one place that knows them.

DR5-style catalogs have scalar columns per band (``flux_g``); DR3-style catalogs have
arrays over the six DECam bands ugrizY (``decam_flux[:, 1]`` is g). Everything that needs
"the g-band flux of a Tractor source" asks `band_quantity`, for raw catalogs
(``prefix=""``) and for derived tables (``prefix="tractor_"``) alike.
"""

import numpy as np

from ..fileformat import BANDS, TRACTOR_TYPES, injected_flux_column, transmission_column

__all__ = ["BANDS", "DECAM_INDEX", "QUANTITIES", "band_column", "band_quantity", "deextincted_flux", "tractor_types",
           "true_flux"]

# position of each band in the DR3 ugrizY arrays
DECAM_INDEX = {"u": 0, "g": 1, "r": 2, "i": 3, "z": 4, "Y": 5}

# quantity -> (DR5 column stem, DR3 array column)
QUANTITIES = {
    "flux": ("flux", "decam_flux"),
    "flux_ivar": ("flux_ivar", "decam_flux_ivar"),
    "mw_transmission": ("mw_transmission", "decam_mw_transmission"),
    "psfdepth": ("psfdepth", "decam_depth"),
    "galdepth": ("galdepth", "decam_galdepth"),
    "psfsize": ("psfsize", "decam_psfsize"),
    "anymask": ("anymask", "decam_anymask"),
    "allmask": ("allmask", "decam_allmask"),
    "nobs": ("nobs", "decam_nobs"),
    "fracin": ("fracin", "decam_fracin"),
}


def band_column(columns, quantity, band, prefix=""):
    """The column of `columns` holding one band of a Tractor quantity: the DR5 scalar
    column (``flux_g``), else the DR3 array over ugrizY (``decam_flux``); None when neither
    is there. Arguments as `band_quantity`."""
    stem, decam = QUANTITIES[quantity]
    for name in (f"{prefix}{stem}_{band}", f"{prefix}{decam}"):
        if name in columns:
            return name
    return None


def band_quantity(columns, quantity, band, prefix=""):
    """One band of a Tractor quantity, from whichever schema `columns` has.

    Parameters
    ----------
    columns : mapping
        Column name -> array (a Tractor catalog, or derived columns with `prefix`).
    quantity : str
        A key of `QUANTITIES`, e.g. ``"flux"`` or ``"psfdepth"``.
    band : str
        ``"g"``, ``"r"`` or ``"z"``.
    prefix : str
        Prefix of the Tractor columns in `columns` (``"tractor_"`` in derived tables).

    Returns
    -------
    numpy.ndarray or None
        The 1-D array, or None when neither schema's column is present.
    """
    name = band_column(columns, quantity, band, prefix)
    if name is None:
        return None
    values = np.asarray(columns[name])
    return values[:, DECAM_INDEX[band]] if name == prefix + QUANTITIES[quantity][1] else values


def deextincted_flux(columns, band, prefix=""):
    """Measured flux / mw_transmission in nanomaggies, in float64 (NaN where either is
    missing; None when a column is absent).

    The catalogs store float32; dividing in float32 would round the quotient before the
    selection compares it with a cut, so a source at a cut boundary would be selected or
    not depending on the dtype its caller happened to pass (as `true_flux`).
    """
    flux = band_quantity(columns, "flux", band, prefix)
    transmission = band_quantity(columns, "mw_transmission", band, prefix)
    if flux is None or transmission is None:
        return None
    flux, transmission = np.asarray(flux, np.float64), np.asarray(transmission, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(transmission > 0, flux / transmission, np.nan)


def true_flux(columns, band):
    """Extinction-free injected flux in nanomaggies: simcat ``<band>flux`` (as added to the
    images) / ``mw_transmission_<band>``, in float64."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.asarray(columns[injected_flux_column(band)], np.float64)
                / np.asarray(columns[transmission_column(band)], np.float64))


def tractor_types(values):
    """Tractor ``type`` values as upper-case bytes without FITS padding (``b"REX"``), so
    that both schemas' spellings (``"REX "``, ``b"rex"``) compare equal to `TRACTOR_TYPES`."""
    values = np.asarray(values)
    if values.dtype.kind == "U":
        values = np.char.encode(values, "ascii")
    return np.char.upper(np.char.strip(values.astype("S8")))


# the recognised Tractor types as the bytes `tractor_types` returns
TYPE_CODES = tuple(kind.encode() for kind in TRACTOR_TYPES)
