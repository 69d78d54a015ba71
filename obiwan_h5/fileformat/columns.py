"""Columns of the derived file: names, dtypes, shapes, descriptions, units, fill values.

The plan builds one `Column` list for the whole job (the union over bricks); every rank
creates the same datasets from it. The ``summary`` columns are fixed (`SUMMARY_COLUMNS`).
Where a column is computed: `core.derivation` for ``randoms``, `core.summary` for
``summary``.
"""

import re
import zlib
from dataclasses import dataclass

import numpy as np

from .layout import BANDS, SELECTIONS, TRACTOR_TYPES

__all__ = ["NEXPHIST_BINS", "SUMMARY_COLUMNS", "TRACTOR_PREFIX", "TRUTH_PREFIX", "Column", "describe", "fill_value",
           "injected_flux_column", "rows_checksum", "rows_checksums", "summary_column_type", "summary_columns",
           "tractor_column", "transmission_column", "truth_column"]

NANOMAGGY = "nanomaggy"
IVAR = "1/nanomaggy^2"


@dataclass(frozen=True)
class Column:
    """One column of a derived group: 1-D when `shape` is ``()``, else ``(N,) + shape``."""

    name: str
    dtype: np.dtype
    shape: tuple = ()
    description: str = ""
    unit: str = ""

    @property
    def row_bytes(self):
        """Bytes of one row of the column (the dtype's size times the elements of `shape`)."""
        return int(np.dtype(self.dtype).itemsize * int(np.prod(self.shape, dtype=np.int64)))


# a ratio, a count of nothing physical, a fraction: no unit, and the description says so
# (the format writes no unit attribute for it, which alone could mean "unknown")
DIMENSIONLESS = " (dimensionless)"

# (pattern, description, unit) for Tractor columns, first match wins; {band} fills in.
# Units as the Legacy Survey DR3/DR5 catalog pages give them, in the spelling of
# `metadata.fits_unit` (``nanomaggy``, ``1/nanomaggy^2``, ``1/arcsec^2``).
_TRACTOR_DOCS = [
    (r"ra|dec", "position of the matched Tractor source", "deg"),
    (r"(ra|dec)_ivar", "inverse variance of the position", "1/deg^2"),
    (r"b([xy])", "{band} position (0-indexed) in the brick's image stack", "pix"),
    (r"flux_([grz]|w\d)", "model flux in band {band}", NANOMAGGY),
    (r"flux_ivar_([grz]|w\d)", "inverse variance of flux in band {band}", IVAR),
    (r"(fiber|fibertot)flux_([grz])", "flux in a 1.5 arcsec fiber ({band} band; fibertot: all sources)", NANOMAGGY),
    (r"decam_flux", "model fluxes over DECam ugrizY", NANOMAGGY),
    (r"decam_flux_ivar", "inverse variances of fluxes over DECam ugrizY", IVAR),
    (r"wise_flux", "model fluxes in WISE W1-W4", NANOMAGGY),
    (r"wise_flux_ivar", "inverse variances of WISE W1-W4 fluxes", IVAR),
    (r"wise_lc_flux", "WISE light curve fluxes (W1, W2 per epoch)", NANOMAGGY),
    (r"wise_lc_flux_ivar", "inverse variances of the WISE light curve fluxes", IVAR),
    (r"wise_lc_mjd", "Modified Julian Dates of the WISE light curve epochs", "d"),
    (r"mjd_(min|max)", "{band}imum Modified Julian Date of the observations used", "d"),
    (r"apflux(_resid)?_([grz])", "aperture fluxes (residual image when _resid) in band {band}", NANOMAGGY),
    (r"apflux_ivar_([grz])", "inverse variances of the aperture fluxes in band {band}", IVAR),
    (r"decam_apflux(_resid)?", "aperture fluxes over DECam ugrizY (residual image when _resid)", NANOMAGGY),
    (r"decam_apflux_ivar", "inverse variances of the aperture fluxes over DECam ugrizY", IVAR),
    (r"mw_transmission_([grz]|w\d)", "Milky Way dust transmission in band {band}" + DIMENSIONLESS, ""),
    (r"(decam|wise)_mw_transmission", "Milky Way dust transmission over the {band} bands" + DIMENSIONLESS, ""),
    (r"psfdepth_([grz])", "PSF detection inverse variance (5 sigma depth) in band {band}", IVAR),
    (r"galdepth_([grz])", "galaxy detection inverse variance in band {band}", IVAR),
    (r"decam_(gal)?depth", "detection inverse variance over DECam ugrizY", IVAR),
    (r"psfsize_([grz])", "PSF FWHM in band {band}", "arcsec"),
    (r"decam_psfsize", "PSF FWHM over DECam ugrizY", "arcsec"),
    (r"(any|all)mask_([grz])", "pixel mask bits (any/all exposures) in band {band}", ""),
    (r"decam_(any|all)mask", "pixel mask bits ({band} exposures) over DECam ugrizY", ""),
    (r"nobs_([grz]|w\d)", "number of exposures in band {band}", ""),
    (r"(decam|wise|wise_lc)_nobs", "number of exposures over the {band} bands", ""),
    (r"(rchisq|rchi2)_([grz]|w\d)", "profile-weighted reduced chi-squared of the model in band {band}"
     + DIMENSIONLESS, ""),
    (r"(decam|wise|wise_lc)_rchi2", "profile-weighted reduced chi-squared over the {band} bands" + DIMENSIONLESS, ""),
    (r"dchisq", "chi-squared differences between successively more complex model fits" + DIMENSIONLESS, ""),
    (r"fracflux_([grz]|w\d)", "profile-weighted flux fraction from other sources in band {band}" + DIMENSIONLESS,
     ""),
    (r"fracmasked_([grz]|w\d)", "profile-weighted fraction of masked pixels in band {band}" + DIMENSIONLESS, ""),
    (r"fracin_([grz])", "fraction of the model flux within the blob in band {band}" + DIMENSIONLESS, ""),
    (r"(decam|wise|wise_lc)_frac(flux|masked|in)", "profile-weighted frac{band} per band" + DIMENSIONLESS,
     ""),
    (r"type", "Tractor morphological model (PSF, SIMP, REX, EXP, DEV, COMP)", ""),
    (r"brick_primary", "source is inside the brick's unique area", ""),
    (r"ebv", "SFD E(B-V) at the source", "mag"),
    (r"fracdev", "fraction of the model flux in the deVaucouleurs component" + DIMENSIONLESS, ""),
    (r"fracdev_ivar", "inverse variance of fracdev" + DIMENSIONLESS, ""),
    (r"shape(exp|dev)_r", "half-light radius of the {band} profile", "arcsec"),
    (r"shape(exp|dev)_r_ivar", "inverse variance of the half-light radius of the {band} profile", "1/arcsec^2"),
    (r"shape(exp|dev)_e[12]", "ellipticity component of the {band} profile" + DIMENSIONLESS, ""),
    (r"shape(exp|dev)_e[12]_ivar", "inverse variance of an ellipticity component of the {band} profile"
     + DIMENSIONLESS, ""),
    (r"parallax", "Gaia parallax", "mas"),
    (r"parallax_ivar", "inverse variance of the Gaia parallax", "1/mas^2"),
    (r"pm(ra|dec)", "Gaia proper motion in {band}", "mas/yr"),
    (r"pm(ra|dec)_ivar", "inverse variance of the Gaia proper motion in {band}", "yr^2/mas^2"),
    (r"gaia_phot_(g|bp|rp)_mean_mag", "Gaia {band} mean magnitude (Vega)", "mag"),
]


def _tractor_doc(stem):
    for pattern, text, unit in _TRACTOR_DOCS:
        match = re.fullmatch(pattern, stem)
        if match:
            band = match.groups()[-1] if match.groups() else ""
            return f"Tractor: {text.format(band=band)}", unit
    return f"Tractor: {stem}", ""


_SIMCAT_DOCS = {
    "id": ("id of the injected source (key of the randoms truth table)", ""),
    "ra": ("injected right ascension", "deg"),
    "dec": ("injected declination", "deg"),
    "x": ("injected x pixel position in the brick", "pix"),
    "y": ("injected y pixel position in the brick", "pix"),
    "gflux": ("g flux added to the images (extincted)", NANOMAGGY),
    "rflux": ("r flux added to the images (extincted)", NANOMAGGY),
    "zflux": ("z flux added to the images (extincted)", NANOMAGGY),
    "n": ("Sersic index of the injected profile" + DIMENSIONLESS, ""),
    "rhalf": ("half-light radius of the injected profile", "arcsec"),
    "e1": ("ellipticity component 1 of the injected profile" + DIMENSIONLESS, ""),
    "e2": ("ellipticity component 2 of the injected profile" + DIMENSIONLESS, ""),
}

_TRUTH_UNITS = {"ra": "deg", "dec": "deg", "g": "mag", "r": "mag", "z": "mag", "rhalf": "arcsec", "pa": "deg"}
# truth columns with no unit whose meaning is known
_TRUTH_DIMENSIONLESS = {"n": "Sersic index", "ba": "axis ratio", "e1": "ellipticity component 1",
                        "e2": "ellipticity component 2", "redshift": "redshift"}

# the names of the ``randoms`` columns by where they come from (docs/format.md): the
# truth table's ``psql_<col>``, the matched Tractor source's ``tractor_<col>``; the
# simcat's keep their own names, among them the flux added to the images ``<band>flux``
# and its Milky Way transmission ``mw_transmission_<band>``
TRUTH_PREFIX, TRACTOR_PREFIX = "psql_", "tractor_"
_TRANSMISSION_PREFIX = "mw_transmission_"


def truth_column(name):
    """The ``randoms`` column of truth-table column `name` (``psql_<name>``)."""
    return TRUTH_PREFIX + name


def tractor_column(name):
    """The ``randoms`` column of Tractor catalog column `name` (``tractor_<name>``)."""
    return TRACTOR_PREFIX + name


def injected_flux_column(band):
    """The simcat column of the flux added to the images in `band` (``<band>flux``,
    extincted)."""
    return f"{band}flux"


def transmission_column(band):
    """The simcat column of the Milky Way transmission of `band` (``mw_transmission_<band>``)."""
    return _TRANSMISSION_PREFIX + band


DERIVED_DOCS = {
    "unique_id": ("'<id>_<brickname>_<rsdir>', unique over the file", ""),
    "brickname": ("brick of the injection", ""),
    "rsdir": ("obiwan iteration directory of the injection", ""),
    "obiwan_mask": ("recovery bits, see file attribute obiwan_mask_bits", ""),
    "targets_mask": ("target-selection bits, see file attribute targets_mask_bits", ""),
}


def describe(name):
    """Description and unit of a ``randoms`` column, from its name."""
    if name in DERIVED_DOCS:
        return DERIVED_DOCS[name]
    if name.startswith(TRACTOR_PREFIX):
        return _tractor_doc(name[len(TRACTOR_PREFIX):])
    if name.startswith(TRUTH_PREFIX):
        stem = name[len(TRUTH_PREFIX):]
        meaning = f" ({_TRUTH_DIMENSIONLESS[stem]}, dimensionless)" if stem in _TRUTH_DIMENSIONLESS else ""
        return f"truth from the randoms table: {stem}{meaning}", _TRUTH_UNITS.get(stem, "")
    if name.startswith(_TRANSMISSION_PREFIX):
        return f"Milky Way transmission applied to the injected {name[-1]} flux" + DIMENSIONLESS, ""
    return _SIMCAT_DOCS.get(name, (f"simcat: {name}", ""))


def fill_value(dtype):
    """Value of a column for rows with no data (unmatched rows, docs/concepts.md)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.nan
    if dtype.kind == "b":
        return False
    if dtype.kind == "S":
        return b""
    return 0


def rows_checksum(columns, names):
    """CRC-32 of a brick's rows: the bytes of each column, in `names` order.

    A CRC detects every single-bit error and every burst of up to 32 bits for certain, and
    at 4 GB/s it costs little next to writing the rows (a cryptographic hash ran at 0.9).

    Stored in ``bricks/checksum`` when the rows are written; ``validate --deep``
    recomputes it from the file (sorted ``randoms`` names) to find rows that changed.
    """
    nrows = len(columns[names[0]]) if names else 0
    return rows_checksums(columns, names, [(0, nrows)])[0]


def rows_checksums(columns, names, ranges):
    """`rows_checksum` of several bricks whose rows are ranges ``[start, stop)`` of the same
    `columns`: each column's bytes are viewed once, each brick's CRC chained over slices."""
    if not ranges:
        return []
    views, widths = [], []
    for name in names:
        values = np.ascontiguousarray(columns[name])
        views.append(memoryview(values.reshape(-1).view(np.uint8)))
        widths.append(values.itemsize * int(np.prod(values.shape[1:])))
    checksums = []
    for start, stop in ranges:
        crc = 0
        for view, width in zip(views, widths):
            crc = zlib.crc32(view[start * width:stop * width], crc)
        checksums.append(crc)
    return checksums


# bins of the nexphist_<band> summary columns: nobs 0, 1, ..., 14 and >= 15
NEXPHIST_BINS = 16


def _summary_columns():
    # name -> (dtype, description, unit), in file order; a numpy sub-array dtype
    # ("(16,)i8") makes a 2-D column of shape (B, 16)
    cols = {
        "brickname": ("S8", "brick name", ""),
        "ra": ("f8", "brick centre right ascension", "deg"),
        "dec": ("f8", "brick centre declination", "deg"),
        "brick_area": ("f8", "area inside the brick's ra/dec bounds", "deg^2"),
        "n_inj": ("i8", "injected sources that touched at least one CCD (rows of the brick)", ""),
        "n_rec": ("i8", "injected sources recovered (obiwan_mask bit 0)", ""),
        "frac_recovered": ("f8", "n_rec / n_inj" + DIMENSIONLESS, ""),
    }
    for sel in SELECTIONS:
        cols[f"n_true_{sel}"] = ("i8", f"sources whose true fluxes pass {sel}", "")
        cols[f"n_true_rec_meas_{sel}"] = ("i8", f"true {sel}, recovered, and measured {sel}", "")
    for sel in ("eboss_ngc", "eboss_sgc"):
        cols[f"n_true_rec_meas_{sel}_allmask"] = (
            "i8", f"as n_true_rec_meas_{sel} with the allmask (not anymask) cut", "")
    for kind in TRACTOR_TYPES:
        cols[f"n_type_{kind.lower()}"] = ("i8", f"recovered sources that Tractor fit as {kind}", "")
    for band in BANDS:
        cols[f"psfsize_{band}"] = ("f8", f"median PSF FWHM of recovered sources in {band}", "arcsec")
    cols["ebv"] = ("f8", "median E(B-V) of recovered sources", "mag")
    for band in BANDS:
        cols[f"trans_{band}"] = (
            "f8", f"median Tractor Milky Way transmission of recovered sources in {band}" + DIMENSIONLESS, "")
    for band in BANDS:
        cols[f"ext_{band}"] = ("f8", f"Milky Way extinction in {band}, -2.5 log10(trans_{band})", "mag")
    cols["nobjs"] = ("i8", "brick_primary sources of the brick's Tractor catalogs, summed over its rsdirs", "")
    for band in BANDS:
        cols[f"nexp_{band}"] = ("f8", f"median Tractor nobs_{band} (exposures) of recovered sources", "")
    for band in BANDS:
        cols[f"nexphist_{band}"] = (
            f"({NEXPHIST_BINS},)i8",
            f"recovered sources by Tractor nobs_{band}: element k counts nobs = k for k < "
            f"{NEXPHIST_BINS - 1}, the last nobs >= {NEXPHIST_BINS - 1}", "")
    for kind in ("psfdepth", "galdepth"):
        for band in BANDS:
            cols[f"{kind}_{band}"] = ("f8", f"5 sigma AB depth from the median {kind} ivar of recovered sources in {band}", "mag")
    for band in BANDS:
        cols[f"depth_at_half_recovered_{band}"] = (
            "f8", f"centre of the first true-{band} magnitude bin (20 over [18, 26]) with recovered fraction <= 0.5", "mag")
    return cols


SUMMARY_COLUMNS = _summary_columns()


def summary_column_type(name):
    """``(dtype, shape)`` of one element of summary column `name`: ``(int64, (16,))`` for
    the ``nexphist_<band>`` histograms, ``(dtype, ())`` for the scalar columns."""
    dtype = np.dtype(SUMMARY_COLUMNS[name][0])
    return dtype.base, dtype.shape


def summary_columns():
    """The ``summary`` group as `Column` objects, in file order."""
    return [Column(name, *summary_column_type(name), text, unit)
            for name, (_, text, unit) in SUMMARY_COLUMNS.items()]
